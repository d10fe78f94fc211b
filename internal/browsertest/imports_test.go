package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	imports "github.com/whippet-go/whippet/examples/imports/app"
	"github.com/whippet-go/whippet/notify"
	"github.com/whippet-go/whippet/testkit"
)

// The contacts-import page of examples/imports, driven in Chromium, with
// the example's services (package app) on real Kafka.

const (
	importContacts = 300 // 15 jobs of 20
	importPerJob   = 20
	importJobs     = importContacts / importPerJob
)

// startImports starts the example's services under names of the test's own
// and removes their topics and groups when the test ends.
func startImports(t *testing.T, cfg imports.Config) (*imports.System, *testkit.Cluster) {
	t.Helper()
	kc := testkit.Shared(t)
	cfg.Kafka = whippet.Connection{Brokers: kc.Brokers}
	cfg.Name = testkit.TopicName(t.Name())
	cfg.PerJob = importPerJob
	t.Cleanup(func() { removeByPrefix(t, kc, cfg.Name) })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sys, err := imports.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sys.Close(ctx); err != nil {
			t.Errorf("closing the services: %v", err)
		}
	})
	return sys, kc
}

// removeByPrefix deletes the topics and groups whose names start with name.
func removeByPrefix(t *testing.T, kc *testkit.Cluster, name string) {
	adm := kc.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if topics, err := adm.ListTopics(ctx); err == nil {
		var del []string
		for _, tp := range topics.Names() {
			if strings.HasPrefix(tp, name) {
				del = append(del, tp)
			}
		}
		if _, err := adm.DeleteTopics(ctx, del...); err != nil {
			t.Logf("delete topics %v: %v", del, err)
		}
	}
	if groups, err := adm.ListGroups(ctx); err == nil {
		var del []string
		for _, g := range groups.Groups() {
			if strings.HasPrefix(g, name) {
				del = append(del, g)
			}
		}
		if _, err := adm.DeleteGroups(ctx, del...); err != nil {
			t.Logf("delete groups %v: %v", del, err)
		}
	}
}

// contactsFile writes the CSV a person would pick.
func contactsFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "contacts.csv")
	if err := os.WriteFile(p, []byte(imports.SampleCSV(importContacts)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// openPage opens the page pinned to gateway (1-based), waits for its socket
// and returns its channel.
func openPage(ctx context.Context, t *testing.T, sys *imports.System, gateway int) string {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.Navigate(fmt.Sprintf("%s/?gateway=%d", sys.JobsURL(), gateway))); err != nil {
		t.Fatal(err)
	}
	waitText(ctx, t, fmt.Sprintf(`#conn[data-state="open"][data-gateway="%d"]`, gateway), fmt.Sprintf("connected to gateway %d", gateway))
	var ch string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.importsPage.channel`, &ch)); err != nil {
		t.Fatal(err)
	}
	return ch
}

// upload picks file in the page and clicks Import; it returns the import id
// the jobs service answered.
func upload(ctx context.Context, t *testing.T, file string) string {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.SetUploadFiles("#file", []string{file}, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	click(ctx, t, "#import")
	waitText(ctx, t, "#upload-status", "accepted", fmt.Sprintf("%d contacts in %d jobs", importContacts, importJobs))
	var imp string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector("#upload-status").dataset.import`, &imp)); err != nil {
		t.Fatal(err)
	}
	return imp
}

// pageImport is what the page holds of one import.
type pageImport struct {
	Taken, Finished, Completions, Imported, Rejected int
	Tiles                                            [][2]int // per job: taken and done notifications
}

func pageState(ctx context.Context, t *testing.T, imp string) (ids []string, duplicates int, v pageImport) {
	t.Helper()
	var raw struct {
		IDs        []string
		Duplicates int
		Imp        pageImport
	}
	js := fmt.Sprintf(`(() => { const s = window.importsPage, v = s.imports[%q];
		return {IDs: s.ids, Duplicates: s.duplicates, Imp: {Taken: v.taken, Finished: v.finished, Completions: v.completions,
			Imported: v.imported, Rejected: v.rejected, Tiles: v.tiles.map(t => [t.taken, t.done])}}; })()`, imp)
	if err := chromedp.Run(ctx, chromedp.Evaluate(js, &raw)); err != nil {
		t.Fatal(err)
	}
	return raw.IDs, raw.Duplicates, raw.Imp
}

// channelRecords reads the notification topic (read_committed, as the
// gateways do) until a record of ch satisfies until, and returns the records
// of ch up to it.
func channelRecords(t *testing.T, kc *testkit.Cluster, topic, ch string, until func(imports.Notification) bool) []*kgo.Record {
	t.Helper()
	var mine []*kgo.Record
	kc.ConsumeUntil(context.Background(), t, topic, func(all []*kgo.Record) bool {
		mine = mine[:0]
		for _, r := range all {
			if string(r.Key) != ch {
				continue
			}
			mine = append(mine, r)
			var n imports.Notification
			if json.Unmarshal(r.Value, &n) == nil && until(n) {
				return true
			}
		}
		return false
	}, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	return mine
}

// checkImport checks the page against Kafka: the page got every
// notification of its channel, in order, once (ids equal), every job was
// taken and done, and there is exactly one "import completed". A sentinel
// notification, published after the page showed the completion, closes the
// stream: a second "import completed" would be before it.
func checkImport(ctx context.Context, t *testing.T, sys *imports.System, kc *testkit.Cluster, ch, imp string) []string {
	t.Helper()
	waitText(ctx, t, fmt.Sprintf(`#imp-%s .completed`, imp), fmt.Sprintf("Import completed: %d jobs", importJobs))
	pub, err := notify.NewPublisher(whippet.Connection{Brokers: kc.Brokers}, sys.Config().NotifyTopic())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	sentinel, err := pub.PublishJSON(context.Background(), ch, imports.Notification{Kind: "test-end", Import: imp, Jobs: importJobs})
	if err != nil {
		t.Fatal(err)
	}
	waitText(ctx, t, fmt.Sprintf(`#log li[data-id="%s"]`, sentinel), "unknown notification")

	recs := channelRecords(t, kc, pub.Topic(), ch, func(n imports.Notification) bool { return n.Kind == "test-end" })
	var want []string
	completions, importers := 0, map[string]bool{}
	for _, r := range recs {
		want = append(want, fmt.Sprintf("%d-%d", r.Partition, r.Offset))
		var n imports.Notification
		if err := json.Unmarshal(r.Value, &n); err != nil {
			t.Fatal(err)
		}
		switch n.Kind {
		case imports.ImportCompleted:
			completions++
		case imports.JobTaken, imports.JobDone:
			importers[n.Importer] = true
		}
	}
	if completions != 1 {
		t.Errorf("Kafka holds %d import completed notifications for the channel, want 1", completions)
	}
	if len(importers) == 0 || importers[""] {
		t.Errorf("job notifications from importers %v", importers)
	}
	ids, dups, v := pageState(ctx, t, imp)
	if !slices.Equal(ids, want) {
		t.Errorf("the page got notifications\n%v\nKafka has for its channel\n%v", ids, want)
	}
	if dups != 0 {
		t.Errorf("the page got %d notifications twice", dups)
	}
	if v.Completions != 1 {
		t.Errorf("the page shows %d import completed, want exactly 1", v.Completions)
	}
	if v.Taken != importJobs || v.Finished != importJobs || len(v.Tiles) != importJobs {
		t.Errorf("the page shows %d jobs taken and %d done of %d (%d tiles)", v.Taken, v.Finished, importJobs, len(v.Tiles))
	}
	for j, tile := range v.Tiles {
		if tile[0] < 1 || tile[1] < 1 {
			t.Errorf("job %d: %d taken and %d done notifications on the page", j, tile[0], tile[1])
		}
	}
	if want := importContacts - importContacts/50; v.Imported != want || v.Rejected != importContacts/50 {
		t.Errorf("the page counts %d imported and %d rejected, want %d and %d", v.Imported, v.Rejected, want, importContacts/50)
	}
	t.Logf("the page got %d notifications (import %s: %d jobs from importers %v, 1 completed)", len(ids), imp, importJobs, keys(importers))
	return ids
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestImportsPageInChromium: the page opens its socket to gateway 2,
// uploads a CSV to the jobs service and shows every job taken and done and
// one "import completed", published by the importers and the completions
// service (other clients than the gateway's), pushed by gateway 2.
func TestImportsPageInChromium(t *testing.T) {
	chromium(t)
	leakCheck(t)
	sys, kc := startImports(t, imports.Config{JobDelay: 30 * time.Millisecond})
	ctx, pageErrs := browser(t)

	ch := openPage(ctx, t, sys, 2)
	waitText(ctx, t, "#import[disabled]", "Import") // no file yet
	imp := upload(ctx, t, contactsFile(t))
	ids := checkImport(ctx, t, sys, kc, ch, imp)
	screenshot(ctx, t, "imports-completed.png")

	testkit.Eventually(t, 10*time.Second, func() error { // counted once the write returned
		if got := sys.Gateways[1].Stats().Delivered; got != int64(len(ids)) {
			return fmt.Errorf("gateway 2 delivered %d notifications, the page got %d", got, len(ids))
		}
		return nil
	})
	if got := sys.Gateways[0].Stats().Delivered; got != 0 {
		t.Errorf("gateway 1 delivered %d notifications; the page is on gateway 2", got)
	}
	pageErrs.check(t)
}

// TestImportsPageGatewayFailover: the gateway the page is on (2) is stopped
// mid-import; the page reconnects to gateway 1 with its last id. Its
// reconnect is held until the rest of the import (10 of 15 jobs and the
// completion) is in Kafka, so that everything after the last id reaches the
// page only through the resume: it still misses nothing and gets nothing
// twice.
func TestImportsPageGatewayFailover(t *testing.T) {
	chromium(t)
	leakCheck(t)
	const before = 5 // jobs done before the gateway stops
	release := make(chan struct{})
	var holding atomic.Bool
	arrived := make(chan struct{}, 1)
	unhold := make(chan struct{})
	sys, kc := startImports(t, imports.Config{
		JobDelay: 10 * time.Millisecond,
		Work: func(ctx context.Context, _ string, job imports.Job) error {
			if job.Job < before {
				return nil
			}
			select { // jobs of one partition are in job order: the first five all pass
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		WrapGateway: func(i int, h http.Handler) http.Handler {
			if i != 0 {
				return h
			}
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if holding.Load() {
					select {
					case arrived <- struct{}{}:
					default:
					}
					select {
					case <-unhold:
					case <-r.Context().Done():
						return
					}
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	releaseJobs := sync.OnceFunc(func() { close(release) })
	releaseReconnect := sync.OnceFunc(func() { close(unhold) })
	t.Cleanup(func() { releaseJobs(); releaseReconnect() }) // before the services close (cleanups run last first)
	ctx, pageErrs := browser(t)

	ch := openPage(ctx, t, sys, 2)
	imp := upload(ctx, t, contactsFile(t))
	waitText(ctx, t, fmt.Sprintf(`#imp-%s[data-done="%d"]`, imp, before), fmt.Sprintf("%d of %d jobs done", before, importJobs))

	holding.Store(true)
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sys.StopGateway(stopCtx, 1); err != nil {
		t.Fatalf("stopping gateway 2: %v", err)
	}
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the page did not reconnect to gateway 1 within 30s of gateway 2 stopping")
	}
	var last string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.importsPage.last`, &last)); err != nil {
		t.Fatal(err)
	}
	waitText(ctx, t, "#conn-log", "gateway 2 closed (1001", "reconnecting to gateway 1 with last="+last)
	screenshot(ctx, t, "imports-reconnecting.png")

	// The rest of the import happens while the page is away.
	releaseJobs()
	channelRecords(t, kc, sys.Config().NotifyTopic(), ch, func(n imports.Notification) bool { return n.Kind == imports.ImportCompleted && n.Import == imp })
	releaseReconnect()

	waitText(ctx, t, `#conn[data-state="open"][data-gateway="1"]`, "connected to gateway 1 (resumed after "+last+")")
	ids := checkImport(ctx, t, sys, kc, ch, imp)
	screenshot(ctx, t, "imports-after-failover.png")

	at := slices.Index(ids, last)
	if at < 0 {
		t.Fatalf("the last id before the reconnect, %s, is not among the page's ids", last)
	}
	resumed := len(ids) - 1 - at - 1 // after last, before the sentinel
	if resumed < importJobs-before+1 {
		t.Errorf("the page got %d notifications after reconnecting, want at least %d (the rest of the jobs done, and the completion)", resumed, importJobs-before+1)
	}
	if st := sys.Gateways[0].Stats(); st.Resumed != 1 || st.ResumeUnavailable != 0 {
		t.Errorf("gateway 1: %d resumes, %d unavailable; want 1 and 0", st.Resumed, st.ResumeUnavailable)
	}
	t.Logf("gateway 2 stopped after %s; %d notifications reached the page through gateway 1's resume and after", last, resumed)
	pageErrs.check(t)
}
