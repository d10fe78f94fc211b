package app

import (
	"context"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/producer"
)

// Limits of one upload.
const (
	// MaxUploadBytes bounds the CSV body.
	MaxUploadBytes = 16 << 20
	// MaxContacts bounds the rows of one import.
	MaxContacts = 200_000
)

//go:embed static
var static embed.FS

// Jobs is the jobs service, an http.Handler:
//
//	GET  /                        the page (embedded, no build step, no network beyond this host)
//	GET  /config.json             the gateways' ports, for the page
//	GET  /sample.csv?contacts=N   a CSV to try (N from 1 to MaxContacts, default 1000)
//	POST /imports?channel=<id>    a CSV of contacts (header row with an "email" column, "name" optional)
//
// POST splits the CSV into jobs of Config.PerJob contacts, tells the
// aggregator the import's number of jobs, produces the jobs to the jobs topic
// and answers 202 with {"import","jobs","contacts"} at once: the import's
// progress reaches the browser as notifications on its channel, not in this
// answer.
type Jobs struct {
	cfg      Config
	log      *zap.Logger
	p        *producer.Producer
	agg      *aggregator.Aggregator
	mux      *http.ServeMux
	gateways []string // ports, for /config.json
}

// NewJobs opens the jobs service's producer and aggregator client; gatewayPorts
// are told to the page (which connects to ws://<its host>:<port>/notify).
func NewJobs(ctx context.Context, conn whippet.Connection, cfg Config, gatewayPorts []string) (*Jobs, error) {
	cfg = cfg.withDefaults()
	p, err := producer.New(conn, producer.DefaultTopic(cfg.JobsTopic()))
	if err != nil {
		return nil, fmt.Errorf("jobs service: %w", err)
	}
	agg, err := aggregator.Open(ctx, conn, cfg.Name, atomicstore.Partitions(cfg.Partitions))
	if err != nil {
		_ = p.Close(ctx)
		return nil, fmt.Errorf("jobs service: %w", err)
	}
	j := &Jobs{cfg: cfg, log: logger(conn).Named("jobs"), p: p, agg: agg, mux: http.NewServeMux(), gateways: gatewayPorts}
	sub, _ := fs.Sub(static, "static") // the directory is embedded
	j.mux.Handle("GET /", http.FileServerFS(sub))
	j.mux.HandleFunc("GET /config.json", j.config)
	j.mux.HandleFunc("GET /sample.csv", sample)
	j.mux.HandleFunc("POST /imports", j.upload)
	return j, nil
}

func (j *Jobs) ServeHTTP(w http.ResponseWriter, r *http.Request) { j.mux.ServeHTTP(w, r) }

// Close releases the producer and the aggregator client.
func (j *Jobs) Close(ctx context.Context) error {
	return errors.Join(j.p.Close(ctx), j.agg.Close(ctx))
}

func (j *Jobs) config(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"gateways": j.gateways})
}

// Accepted is the jobs service's answer to an upload.
type Accepted struct {
	Import   string `json:"import"`
	Jobs     int    `json:"jobs"`
	Contacts int    `json:"contacts"`
}

func (j *Jobs) upload(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	if err := ValidChannel(ch); err != nil { // the demo's authorization
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	contacts, err := readContacts(http.MaxBytesReader(w, r.Body, MaxUploadBytes))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	imp := newImportID()
	n := (len(contacts) + j.cfg.PerJob - 1) / j.cfg.PerJob
	// The total first: jobs reported before it would be fine (the
	// aggregator waits for it), but an import whose total could not be
	// set must not start.
	if _, err := j.agg.Start(r.Context(), BatchID(imp, ch), n); err != nil {
		j.log.Warn("start import", zap.String("import", imp), zap.Error(err))
		http.Error(w, "cannot start the import: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	recs := make([]*kgo.Record, n)
	for i := range n {
		v, err := json.Marshal(Job{Import: imp, Channel: ch, Job: i, Jobs: n, Contacts: contacts[i*j.cfg.PerJob : min((i+1)*j.cfg.PerJob, len(contacts))]})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		recs[i] = &kgo.Record{Key: []byte(imp + "/" + strconv.Itoa(i)), Value: v}
	}
	if _, err := j.p.ProduceMany(r.Context(), recs...); err != nil {
		// Some jobs may be in Kafka: the import then never completes. A
		// real service records the import first and retries.
		j.log.Warn("produce jobs", zap.String("import", imp), zap.Error(err))
		http.Error(w, "cannot queue the import's jobs: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	j.log.Info("import accepted", zap.String("import", imp), zap.Int("contacts", len(contacts)), zap.Int("jobs", n))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(Accepted{Import: imp, Jobs: n, Contacts: len(contacts)})
}

// readContacts reads a CSV with a header row naming an "email" column (and
// optionally "name"); blank lines are skipped.
func readContacts(r io.Reader) ([]Contact, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the CSV is empty")
		}
		return nil, fmt.Errorf("CSV header: %w", err)
	}
	email, name := -1, -1
	for i, h := range head {
		switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))) {
		case "email", "e-mail", "email address":
			email = i
		case "name", "full name":
			name = i
		}
	}
	if email < 0 {
		return nil, fmt.Errorf("the CSV header %q has no email column", head)
	}
	var out []Contact
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("CSV: %w", err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(out) == MaxContacts {
			return nil, fmt.Errorf("more than %d contacts", MaxContacts)
		}
		c := Contact{}
		if email < len(rec) {
			c.Email = strings.TrimSpace(rec[email])
		}
		if name >= 0 && name < len(rec) {
			c.Name = strings.TrimSpace(rec[name])
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("the CSV has no contacts")
	}
	return out, nil
}

// SampleCSV returns a CSV of n contacts; every 50th has no valid email
// address, which the importers reject.
func SampleCSV(n int) string {
	var b strings.Builder
	b.WriteString("id,name,email\n")
	for i := range n {
		if i%50 == 49 {
			fmt.Fprintf(&b, "%d,Contact %d,not-an-address\n", i, i)
			continue
		}
		fmt.Fprintf(&b, "%d,Contact %d,contact%d@example.com\n", i, i, i)
	}
	return b.String()
}

func sample(w http.ResponseWriter, r *http.Request) {
	n := 1000
	if s := r.URL.Query().Get("contacts"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxContacts {
			http.Error(w, fmt.Sprintf("contacts: want 1 to %d", MaxContacts), http.StatusBadRequest)
			return
		}
		n = v
	}
	w.Header().Set("Content-Type", "text/csv")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="contacts-%d.csv"`, n))
	_, _ = io.WriteString(w, SampleCSV(n))
}
