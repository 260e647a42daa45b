package health

import (
	"testing"

	"go.uber.org/goleak"
)

// Every monitor, checker and test server stops when its test ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
