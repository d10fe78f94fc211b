// Command imports is parts four and five of the product story, "event
// aggregation" and "end to end to the browser": a person picks a CSV of
// contacts on a web page and watches each job's progress and "import
// completed" arrive live.
//
// The services (package app, one process here, separate processes in
// production): a jobs service (HTTP; it also serves the page) splits the
// CSV into import jobs on Kafka and answers at once; 3 importer instances
// (whippet consumers of the jobs topic) publish "job taken" and "job done"
// notifications (notify.Publisher) and report each job to the aggregator,
// at least once (some jobs twice, as a worker that crashed after its report
// and before its commit would); the aggregator's processor emits one
// completion event, in the transaction that records the last job; a
// completions service turns it into one "import completed" notification,
// exactly once; 2 notification gateways (notify.Gateway) on different ports
// push each notification to the browser whose channel it is, whichever
// instance produced it.
//
// By default it runs headless and exits: a Go WebSocket client plays the
// browser (socket to gateway 2, upload to the jobs service) and the program
// exits non-zero unless it saw every job taken and done and exactly one
// "import completed". With -serve it keeps serving until interrupted:
//
//	go run ./examples/imports -serve 127.0.0.1:8080   # then open http://127.0.0.1:8080
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:19092.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/examples/imports/app"
	"github.com/whippet-go/whippet/examples/internal/demo"
	"github.com/whippet-go/whippet/notify"
)

var (
	serve    = flag.String("serve", "", "serve the page at this address (e.g. 127.0.0.1:8080) until interrupted, the gateways on the next two ports; empty: run headless and exit")
	contacts = flag.Int("contacts", 1000, "contacts in the headless run's CSV")
	jobDelay = flag.Duration("job-delay", 0, "how long an importer takes per job (default 20ms headless, 300ms with -serve)")
)

func main() { demo.Main(run) }

func run(brokersFlag string) error {
	cfg := app.Config{Name: "contact-imports", DuplicateReports: true, JobDelay: *jobDelay}
	brokers, stopCluster, err := demo.Cluster(brokersFlag, 3, cfg.JobsTopic(), cfg.NotifyTopic())
	if err != nil {
		return err
	}
	defer stopCluster()
	cfg.Kafka = whippet.Connection{Brokers: brokers}
	if *serve != "" {
		if cfg.JobDelay == 0 {
			cfg.JobDelay = 300 * time.Millisecond // slow enough to watch
		}
		cfg.JobsAddr = *serve
		if cfg.GatewayAddrs, err = nextPorts(*serve, 2); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sys, err := app.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := sys.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
		}
	}()
	fmt.Printf("jobs service and page at %s; gateways at %s and %s; 3 importers, the aggregator, the completions service\n",
		sys.JobsURL(), sys.GatewayURL(0), sys.GatewayURL(1))
	if *serve != "" {
		fmt.Printf("open %s/ in a browser (add ?gateway=1 or ?gateway=2 to pick the gateway); Ctrl-C stops\n", sys.JobsURL())
		sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-sig.Done()
		fmt.Println("stopping")
		return nil
	}
	return browse(ctx, sys, *contacts)
}

// browse plays the browser: a socket to gateway 2, an upload to the jobs
// service, then every notification of its channel until "import completed".
func browse(ctx context.Context, sys *app.System, n int) error {
	ch := app.NewChannel()
	ws, _, err := websocket.Dial(ctx, sys.GatewayURL(1)+"?channel="+url.QueryEscape(ch), nil)
	if err != nil {
		return fmt.Errorf("browser: connect to gateway 2: %w", err)
	}
	defer ws.CloseNow()
	var f frame
	if err := read(ctx, ws, &f); err != nil || f.Type != "subscribed" {
		return fmt.Errorf("browser: want a subscribed frame, got %+v (%v)", f, err)
	}
	last := f.ID

	resp, err := http.Post(sys.JobsURL()+"/imports?channel="+url.QueryEscape(ch), "text/csv", strings.NewReader(app.SampleCSV(n)))
	if err != nil {
		return fmt.Errorf("browser: upload: %w", err)
	}
	var acc app.Accepted
	err = json.NewDecoder(resp.Body).Decode(&acc)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil {
		return fmt.Errorf("browser: upload: %s (%v)", resp.Status, err)
	}
	fmt.Printf("browser (channel %s, gateway 2): uploaded %d contacts: import %s, %d jobs\n", ch, acc.Contacts, acc.Import, acc.Jobs)

	taken, done := make([]int, acc.Jobs), make([]int, acc.Jobs)
	byImporter := map[string]int{}
	imported, rejected, completions, frames := 0, 0, 0, 0
	for completions == 0 {
		if err := read(ctx, ws, &f); err != nil {
			return fmt.Errorf("browser: after %d notifications: %w", frames, err)
		}
		if err := after(f.ID, last); err != nil {
			return err
		}
		last, frames = f.ID, frames+1
		d := f.Data
		if d.Import != acc.Import {
			continue
		}
		switch d.Kind {
		case app.JobTaken:
			taken[d.Job]++
		case app.JobDone:
			if done[d.Job]++; done[d.Job] == 1 {
				imported, rejected = imported+d.Imported, rejected+d.Rejected
				byImporter[d.Importer]++
			}
		case app.ImportCompleted:
			completions++
			for j := range acc.Jobs {
				if taken[j] == 0 || done[j] == 0 {
					return fmt.Errorf("browser: import completed before job %d was taken (%d) and done (%d)", j, taken[j], done[j])
				}
			}
			fmt.Printf("browser: event: import completed: %s, %d jobs\n", d.Import, d.Jobs)
		}
	}
	// A second "import completed" would come right behind the first: the
	// transaction that consumed the completion produced it.
	quiet, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	for {
		err := read(quiet, ws, &f)
		if err != nil {
			if quiet.Err() != nil && ctx.Err() == nil {
				break
			}
			return fmt.Errorf("browser: %w", err)
		}
		if f.Data.Kind == app.ImportCompleted && f.Data.Import == acc.Import {
			completions++
		}
	}
	names := make([]string, 0, len(byImporter))
	for k, v := range byImporter {
		names = append(names, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(names)
	fmt.Printf("browser: %d notifications; %d/%d jobs taken and done (%s); %d contacts imported, %d rejected\n",
		frames, acc.Jobs, acc.Jobs, strings.Join(names, ", "), imported, rejected)
	if completions != 1 {
		return fmt.Errorf("browser: %d import completed notifications for %s, want exactly 1", completions, acc.Import)
	}
	fmt.Println("browser: every job's notifications and exactly one import completed")
	return nil
}

type frame struct {
	Type string           `json:"type"`
	ID   string           `json:"id"`
	Data app.Notification `json:"data"`
}

func read(ctx context.Context, ws *websocket.Conn, f *frame) error {
	_, b, err := ws.Read(ctx)
	if err != nil {
		return err
	}
	*f = frame{}
	return json.Unmarshal(b, f)
}

// after checks that the gateway sent id after last (each notification
// once, in the channel's order).
func after(id, last string) error {
	a, err := notify.ParseID(id)
	if err != nil {
		return err
	}
	b, err := notify.ParseID(last)
	if err != nil {
		return err
	}
	if a.Partition != b.Partition || a.Offset <= b.Offset {
		return fmt.Errorf("browser: notification %s after %s: out of order or again", id, last)
	}
	return nil
}

// nextPorts returns n addresses on addr's host at the ports after addr's.
func nextPorts(addr string, n int) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-serve %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+n > 65535 {
		return nil, errors.New("-serve: want host:port with a port below 65534")
	}
	var out []string
	for i := 1; i <= n; i++ {
		q := 0
		if p != 0 {
			q = p + i
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(q)))
	}
	return out, nil
}
