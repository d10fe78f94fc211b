package localkafka

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Helpers for crash tests. Node numbers are 1-based. They act on the JVMs
// recorded in the state dir; use them on a cluster of your own (its own
// StateDir and BasePort), not on one shared with other tests.

func (c *Cluster) node(node int) (nodeState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if node < 1 || node > len(c.st.Node) {
		return nodeState{}, fmt.Errorf("%w: node %d, cluster has nodes 1..%d", ErrBadConfig, node, len(c.st.Node))
	}
	return c.st.Node[node-1], nil
}

// running returns the node if its JVM runs.
func (c *Cluster) running(node int) (nodeState, error) {
	n, err := c.node(node)
	if err != nil {
		return n, err
	}
	if !n.alive() {
		return n, fmt.Errorf("localkafka: node %d is not running", node)
	}
	return n, nil
}

// Kill SIGKILLs node (a crash: no controlled shutdown, no flush) and waits
// until the process is gone.
func (c *Cluster) Kill(node int) error {
	n, err := c.running(node)
	if err != nil {
		return err
	}
	if err := signalKill(n.PID); err != nil {
		return fmt.Errorf("localkafka: kill node %d: %w", node, err)
	}
	if !waitExit(context.Background(), n.PID, 10*time.Second) {
		return fmt.Errorf("localkafka: node %d (pid %d) survived SIGKILL", node, n.PID)
	}
	return nil
}

// Stop shuts node down cleanly (SIGTERM), waiting up to
// GracefulStopTimeout or until ctx ends, then SIGKILLs it.
func (c *Cluster) Stop(ctx context.Context, node int) error {
	n, err := c.running(node)
	if err != nil {
		return err
	}
	_ = signalCont(n.PID)
	if err := signalTerm(n.PID); err != nil {
		return fmt.Errorf("localkafka: stop node %d: %w", node, err)
	}
	if waitExit(ctx, n.PID, GracefulStopTimeout) {
		return nil
	}
	_ = signalKill(n.PID)
	if !waitExit(context.Background(), n.PID, 10*time.Second) {
		return fmt.Errorf("localkafka: node %d (pid %d) survived SIGKILL", node, n.PID)
	}
	return nil
}

// Pause freezes node with SIGSTOP: its sockets stay open but nothing answers,
// like a long GC pause or a hung host. Resume undoes it.
func (c *Cluster) Pause(node int) error {
	n, err := c.running(node)
	if err != nil {
		return err
	}
	if err := signalStop(n.PID); err != nil {
		return fmt.Errorf("localkafka: pause node %d: %w", node, err)
	}
	return nil
}

// Resume continues a node paused with Pause (SIGCONT).
func (c *Cluster) Resume(node int) error {
	n, err := c.running(node)
	if err != nil {
		return err
	}
	if err := signalCont(n.PID); err != nil {
		return fmt.Errorf("localkafka: resume node %d: %w", node, err)
	}
	return nil
}

// Start restarts a node that was killed or stopped, with its data and
// config, and waits (bounded by ctx, at most DefaultStartTimeout) until the
// cluster metadata lists it again.
func (c *Cluster) Start(ctx context.Context, node int) error {
	n, err := c.node(node)
	if err != nil {
		return err
	}
	if n.alive() {
		return fmt.Errorf("localkafka: node %d is already running (pid %d)", node, n.PID)
	}
	unlock, err := lockFile(ctx, filepath.Join(c.StateDir, ".lock"))
	if err != nil {
		return fmt.Errorf("localkafka: lock state dir: %w", err)
	}
	err = c.launch(node-1, false)
	if err == nil {
		err = c.save()
	}
	unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultStartTimeout)
	defer cancel()
	var last error
	for {
		if !c.Alive()[node-1] {
			return c.notReady(fmt.Errorf("node %d exited after restart", node), node-1)
		}
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		last = brokerRegistered(actx, c.Brokers, int32(node))
		acancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return c.notReady(fmt.Errorf("node %d not back: %w (last check: %v)", node, ctx.Err(), last), node-1)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
