//go:build !unix

package localkafka

import (
	"context"
	"syscall"
)

const supported = false

func detachedAttr() *syscall.SysProcAttr               { return nil }
func processAlive(int) bool                            { return false }
func processIsOurs(int, string) bool                   { return false }
func signalTerm(int) error                             { return ErrUnsupported }
func signalKill(int) error                             { return ErrUnsupported }
func signalStop(int) error                             { return ErrUnsupported }
func signalCont(int) error                             { return ErrUnsupported }
func lockFile(context.Context, string) (func(), error) { return nil, ErrUnsupported }
