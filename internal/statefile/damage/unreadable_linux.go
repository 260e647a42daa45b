package damage

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// asFileUser runs fn on a thread whose file system user is uid. The thread
// is never unlocked: it ends with the goroutine, and its user with it.
func asFileUser(uid int, fn func()) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setfsuid(uid); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	return <-done
}
