package main

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill cmd when the test process dies, so that a chaos
// test that is itself killed (a CI timeout, ^C) leaves no pipeline processes running
// against its broker. (Its dedicated broker daemonizes and is stopped by cleanup only.)
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
