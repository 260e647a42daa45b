package alert

import (
	"testing"

	"go.uber.org/goleak"
)

// Every manager, monitor and test server stops when its test ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
