//go:build !linux

package damage

import "errors"

func asFileUser(int, func()) error {
	return errors.New("only on Linux")
}
