package localkafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const leasesDirName = "leases"

// Acquire is Up for processes that share one cluster, such as the test
// binaries of `go test ./...` running in parallel: it starts the cluster in
// cfg.StateDir or joins the one running there, and records a lease for the
// calling process. The returned release function drops the lease; when the
// last lease of a cluster that Acquire started is dropped, the cluster is
// stopped (as by Down). Leases of processes that died are ignored, so a
// crashed test binary does not keep the cluster alive forever; a cluster
// started by Up (e.g. by `whippet kafka up`) is never stopped by a release.
func Acquire(ctx context.Context, cfg Config) (*Cluster, func(context.Context) error, error) {
	cfg, unlock, err := prepare(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	leases := filepath.Join(cfg.StateDir, leasesDirName)
	others := liveLeases(leases)
	c, err := up(ctx, cfg, true, len(others) > 0)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(leases, 0o755); err != nil {
		return nil, nil, fmt.Errorf("localkafka: %w", err)
	}
	lease := filepath.Join(leases, fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.WriteFile(lease, nil, 0o644); err != nil {
		return nil, nil, fmt.Errorf("localkafka: write lease: %w", err)
	}
	release := func(ctx context.Context) error {
		unlock, err := lockFile(ctx, filepath.Join(cfg.StateDir, ".lock"))
		if err != nil {
			return fmt.Errorf("localkafka: lock state dir: %w", err)
		}
		defer unlock()
		if err := os.Remove(lease); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("localkafka: drop lease: %w", err)
		}
		if len(liveLeases(leases)) > 0 {
			return nil
		}
		cur, err := loadState(cfg.StateDir)
		if errors.Is(err, ErrNotRunning) {
			return nil
		}
		if err != nil {
			return err
		}
		if !cur.st.Managed {
			return nil
		}
		return downLocked(ctx, cur, nil)
	}
	return c, release, nil
}

// liveLeases returns the lease files of running processes, removing the
// others. Lease files are named <pid>-<nanos>.
func liveLeases(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var live []string
	for _, e := range ents {
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && (pid == os.Getpid() || processAlive(pid)) {
			live = append(live, e.Name())
			continue
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	return live
}
