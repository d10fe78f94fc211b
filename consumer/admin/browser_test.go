package admin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/testkit"
)

// chromium finds a Chromium (or Chrome) to drive: $WHIPPET_CHROMIUM, or one
// on PATH. Without one the test is skipped, unless CI=true, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WHIPPET_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no Chromium found (looked for chromium, chromium-browser, google-chrome, headless-shell on PATH, and $WHIPPET_CHROMIUM); " +
		"install it (Debian: apt-get install chromium) to run the dashboard's browser test"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip(msg + "; skipped (with CI=true this is a failure)")
	return ""
}

// browser starts a headless Chromium that can reach nothing but loopback.
func browser(t *testing.T) (context.Context, *pageErrors) {
	t.Helper()
	// A fresh profile, removed when the test ends. Not t.TempDir: Chromium's
	// helper processes may still write to it for a moment after the browser
	// exits, and a failed removal must not fail the test.
	profile, err := os.MkdirTemp("", "whippet-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; os.RemoveAll(profile) != nil && i < 50; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1440, 900), // a laptop screen
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	errs := &pageErrors{}
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "unhandled node event") { // chromedp lags behind CDP
			errs.add("chromedp: " + msg)
		}
	}))
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser gracefully and waits for it
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			errs.add("exception: " + ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				errs.add("console.error: " + strings.Join(args, " "))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError {
				errs.add("log: " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		}
	})
	if err := chromedp.Run(ctx, cdplog.Enable()); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx, errs
}

// pageErrors collects what went wrong in the page.
type pageErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (p *pageErrors) add(m string) {
	p.mu.Lock()
	p.msgs = append(p.msgs, m)
	p.mu.Unlock()
}

func (p *pageErrors) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.msgs {
		t.Errorf("page error: %s", m)
	}
}

// screenshot saves a full-page PNG in the test's artifact directory
// (kept with go test -artifacts -outputdir DIR).
func screenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	var png []byte
	shot := chromedp.Tasks{chromedp.Evaluate(`window.scrollTo(0, 0)`, nil), chromedp.FullScreenshot(&png, 100)}
	if strings.Contains(name, "dialog") { // a modal's backdrop covers the viewport only
		shot = chromedp.Tasks{chromedp.CaptureScreenshot(&png)}
	}
	if err := chromedp.Run(ctx, shot); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// waitText waits until the element sel matches has text containing every
// want, and returns its text.
func waitText(ctx context.Context, t *testing.T, sel string, want ...string) string {
	t.Helper()
	var text string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var nodes []*cdp.Node
		err := chromedp.Run(ctx, chromedp.Nodes(sel, &nodes, chromedp.ByQueryAll, chromedp.AtLeast(0)))
		if err == nil && len(nodes) > 0 {
			err = chromedp.Run(ctx, chromedp.Text(sel, &text, chromedp.ByQuery))
			missing := ""
			for _, w := range want {
				if !strings.Contains(text, w) {
					missing = w
					break
				}
			}
			if err == nil && missing == "" {
				return text
			}
			if err == nil {
				err = fmt.Errorf("text %q lacks %q", text, missing)
			}
		} else if err == nil {
			err = errors.New("no such element")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed %q in %s: %v", want, sel, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func click(ctx context.Context, t *testing.T, sel string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Click(sel, chromedp.ByQuery)); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// TestDashboardInChromium is the operator's story on the page, against a real
// consumer on Kafka: a blocked partition shows, Skip unblocks it, the record
// shows in the dead-letter view, and once the bug is fixed it is replayed.
func TestDashboardInChromium(t *testing.T) {
	chromium(t)
	kc := testkit.Shared(t)
	leakCheck(t)
	a := startApp(t, kc, 3)
	h, err := admin.New(
		admin.Consumer("renewals", a.c),
		admin.DLQ(a.dlq),
		admin.Metrics(a.reg),
		admin.Title("renewal-service"),
		admin.Refresh(time.Second),
		admin.Authorize(func(r *http.Request, act admin.Action) (string, error) { return "oncall@example.com", nil }),
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, h)
	a.produce(t, 0, "user-1", "renew", "user-7", "poison", "user-2", "renew")
	a.produce(t, 1, "user-3", "renew", "user-4", "renew")
	a.produce(t, 2, "user-5", "renew")

	ro, err := admin.New(admin.Consumer("renewals", a.c), admin.DLQ(a.dlq))
	if err != nil {
		t.Fatal(err)
	}
	roSrv := serve(t, ro)

	ctx, pageErrs := browser(t)
	row := fmt.Sprintf(`#blocked tr.blocked-row[data-pos="%s/0/1"]`, a.topic)

	// Without an authorization hook the page shows, and offers no action.
	if err := chromedp.Run(ctx, chromedp.Navigate(roSrv.URL+"/whippet/")); err != nil {
		t.Fatal(err)
	}
	waitText(ctx, t, "#who", "read-only")
	waitText(ctx, t, row+" button.skip[disabled]", "Skip")
	waitText(ctx, t, "#consumers button.pause[disabled]", "Pause")
	// ... and no payload: the key and the error text are hidden, and so
	// are the filters that would tell them apart.
	if text := waitText(ctx, t, row, a.topic+"/0", "hidden"); strings.Contains(text, "user-7") || strings.Contains(text, "card declined") {
		t.Errorf("the read-only page shows the blocked record's payload: %q", text)
	}
	waitText(ctx, t, `#dlq-filter input[name="key"][disabled]`)
	waitText(ctx, t, `#dlq-filter input[name="error"][disabled]`)

	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/whippet/")); err != nil {
		t.Fatal(err)
	}
	text := waitText(ctx, t, row, "renewals", a.topic+"/0", "user-7", "renewal failed: card declined", "Skip")
	t.Logf("blocked row: %q", text)
	waitText(ctx, t, "#who", "signed in as oncall@example.com")
	waitText(ctx, t, fmt.Sprintf(`#consumers tr.part-row[data-tp="%s/0"]`, a.topic), "blocked")
	waitText(ctx, t, fmt.Sprintf(`#consumers tr.part-row[data-tp="%s/2"]`, a.topic), "running")
	waitText(ctx, t, "#summary", "1\nBLOCKED") // CSS upper-cases the labels
	waitText(ctx, t, "#dlq-list", "No dead-letter record in "+a.dlqTopic)
	screenshot(ctx, t, "dashboard-blocked.png")

	// Skip, through the confirmation dialog.
	click(ctx, t, row+" button.skip")
	waitText(ctx, t, "#confirm[open]", "Skip "+a.topic+"/0/1?", "user-7")
	screenshot(ctx, t, "dialog-confirm-skip.png")
	click(ctx, t, "#confirm-ok")
	waitText(ctx, t, "#blocked", "No partition is blocked.")
	dlqRow := `#dlq-list tr.dlq-row`
	waitText(ctx, t, dlqRow, "user-7", "skipped", "renewal failed: card declined", a.topic+"/0/1")
	waitText(ctx, t, "#actions tr.action-row", "oncall@example.com", "skip", a.topic+"/0")
	if got := a.handledValues(0); len(got) != 2 {
		t.Fatalf("partition 0 handled %q after the skip, want both renewals", got)
	}

	// The record, in full.
	click(ctx, t, dlqRow+" button.view")
	waitText(ctx, t, "#record[open]", "poison", "user-7", "skipped", a.group)
	screenshot(ctx, t, "dialog-record.png")
	click(ctx, t, `#record button[value="close"]`)

	// The bug is fixed: replay the selected record.
	a.fixed.Store(true)
	click(ctx, t, dlqRow+" td.check input")
	waitText(ctx, t, "#dlq-replay-selected", "Replay selected (1)")
	click(ctx, t, "#dlq-replay-selected")
	waitText(ctx, t, "#confirm[open]", "Replay 1 selected record(s)?")
	click(ctx, t, "#confirm-ok")
	waitText(ctx, t, "#toasts", "Replayed 1 record(s)")
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, r := range a.handledRecords() {
			if m, ok := dlq.ReplayMarkOf(r); ok && string(r.Key) == "user-7" && m.From.Topic == a.dlqTopic {
				return nil
			}
		}
		return errors.New("the replayed record was not handled")
	})
	waitText(ctx, t, "#actions tr.action-row", "dlq-replay", "replayed 1 of 1 selected record(s)")
	screenshot(ctx, t, "dashboard-after.png")
	pageErrs.check(t)
}
