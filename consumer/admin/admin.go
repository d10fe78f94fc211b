package admin

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
)

//go:embed static
var static embed.FS

var pageTemplate = template.Must(template.ParseFS(static, "static/index.html"))

// actionLogSize is how many actions GET /api/actions keeps.
const actionLogSize = 200

// Handler serves the admin API and the dashboard page. Create it with New and
// mount it on the service's mux, under a prefix of your choice:
//
//	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
//
// It is safe for concurrent use.
type Handler struct {
	cfg       config
	consumers []*entry
	byName    map[string]*entry
	log       *zap.Logger
	root      http.Handler
	page      []byte

	mu      sync.Mutex
	actions []ActionRecord // ring, oldest first once full
	next    int
	now     func() time.Time
}

// entry is a registered consumer and what the handler knows of it beyond
// what the consumer exposes.
type entry struct {
	registration
	mu      sync.Mutex
	skipAll map[consumer.TopicPartition]bool
	paused  bool
}

// New validates the options (no network I/O) and returns the handler. Every
// invalid option is reported, joined, in an error matching ErrInvalidConfig.
func New(opts ...Option) (*Handler, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, byName: map[string]*entry{}, log: cfg.logger, now: time.Now}
	for _, r := range cfg.consumers {
		e := &entry{registration: r, skipAll: map[consumer.TopicPartition]bool{}}
		h.consumers = append(h.consumers, e)
		h.byName[r.name] = e
	}
	var page bytes.Buffer
	if err := pageTemplate.Execute(&page, struct {
		Title   string
		Refresh int64
	}{cfg.title, cfg.refresh.Milliseconds()}); err != nil {
		return nil, fmt.Errorf("admin: rendering the page: %w", err)
	}
	h.page = page.Bytes()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.servePage)
	assets := http.FileServerFS(static)
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	}))
	h.api(mux, "GET /api/info", h.info)
	h.api(mux, "GET /api/consumers", h.listConsumers)
	h.api(mux, "GET /api/consumers/{name}", h.getConsumer)
	h.api(mux, "GET /api/consumers/{name}/partitions", h.listPartitions)
	h.api(mux, "GET /api/consumers/{name}/blocked", h.listBlocked)
	h.api(mux, "POST /api/consumers/{name}/pause", h.consumerAction(ActionPauseConsumer))
	h.api(mux, "POST /api/consumers/{name}/resume", h.consumerAction(ActionResumeConsumer))
	for _, a := range []string{ActionSkip, ActionSkipAll, ActionBlock, ActionPause, ActionResume} {
		h.api(mux, "POST /api/consumers/{name}/partitions/{topic}/{partition}/"+a, h.partitionAction(a))
	}
	h.api(mux, "POST /api/consumers/{name}/partitions/{topic}/{partition}/"+ActionSeek, h.seek)
	h.api(mux, "POST /api/consumers/{name}/topics/{topic}/"+ActionSeek, h.seek)
	h.api(mux, "GET /api/actions", h.listActions)
	h.api(mux, "GET /api/dlq", h.listDLQTopics)
	h.api(mux, "GET /api/dlq/{topic}", h.listDLQ)
	h.api(mux, "GET /api/dlq/{topic}/{partition}/{offset}", h.getDLQ)
	h.api(mux, "POST /api/dlq/{topic}/replay", h.replay)
	h.api(mux, "POST /api/dlq/{topic}/purge", h.purge)
	h.api(mux, "/api/", func(w http.ResponseWriter, r *http.Request) error { return notRouted(mux, w, r) })

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusForbidden, msg: "cross-origin request refused: actions must come from the dashboard's own origin"})
	}))
	h.root = cop.Handler(mux)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if h.cfg.prefix != "" {
		rest, ok := strings.CutPrefix(p, h.cfg.prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			http.NotFound(w, r)
			return
		}
		p = rest
	}
	if p == "" {
		// Mounted at "/x" and asked for "/x": the page's relative links need
		// "/x/". A relative redirect keeps whatever prefix the mux stripped.
		base := path.Base(strings.SplitN(r.RequestURI, "?", 2)[0])
		if base == "/" || base == "." {
			base = ""
		}
		// Not http.Redirect: it resolves the path against r.URL.Path, which
		// lost the prefix.
		w.Header().Set("Location", base+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	if p != r.URL.Path {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = p, ""
		r2.URL = &u
		r = r2
	}
	h.root.ServeHTTP(w, r)
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(h.page)
}

// apiError is an error answer.
type apiError struct {
	status int
	msg    string
	param  string
}

func (e *apiError) Error() string { return e.msg }

func badParam(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, param: param, msg: param + ": " + fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

// api registers an API route: fn's error becomes a JSON error answer.
func (h *Handler) api(mux *http.ServeMux, pattern string, fn func(http.ResponseWriter, *http.Request) error) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := fn(w, r); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				ae = &apiError{status: http.StatusInternalServerError, msg: err.Error()}
			}
			writeError(w, ae)
		}
	})
}

// notRouted answers an /api/ path no route takes: 405 if another method
// would do, else 404.
func notRouted(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := mux.Handler(r2); pattern != "/api/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &apiError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))}
	}
	return notFound("no such API route: %s %s", r.Method, r.URL.Path)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, ErrorResponse{Error: e.msg, Param: e.param})
}

// decodeBody reads a JSON request body into v, refusing unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badParam("body", "not the JSON expected: %v", err)
	}
	if dec.More() {
		return badParam("body", "more than one JSON value")
	}
	return nil
}

// readOnlyMsg is why a handler without a hook refuses actions.
const readOnlyMsg = "read-only: this admin handler has no authorization hook (admin.Authorize), so it refuses every action"

// view authorizes a read.
func (h *Handler) view(r *http.Request) (string, error) {
	if h.cfg.authorize == nil {
		return "", nil
	}
	who, err := h.cfg.authorize(r, Action{Name: ActionView, Partition: -1})
	if err != nil {
		h.log.Warn("admin view refused", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path), zap.Error(err))
		return "", &apiError{status: http.StatusForbidden, msg: "forbidden: " + err.Error()}
	}
	return who, nil
}

// payloads reports whether the request may read payloads
// (ActionViewPayloads); a refusal only hides them, so it is not logged.
func (h *Handler) payloads(r *http.Request) bool {
	if h.cfg.authorize == nil {
		return false
	}
	_, err := h.cfg.authorize(r, Action{Name: ActionViewPayloads, Partition: -1})
	return err == nil
}

// payloadFilter refuses a filter by key or error text to who may not read
// payloads: the answers would tell hidden values apart.
func payloadFilter(param string) error {
	return &apiError{status: http.StatusForbidden, param: param,
		msg: "forbidden: filtering by " + param + " needs the view-payloads permission (admin.ActionViewPayloads), like reading the payloads"}
}

// authorize authorizes an action, logging a refusal.
func (h *Handler) authorize(r *http.Request, a Action) (string, error) {
	fields := func(extra ...zap.Field) []zap.Field {
		f := []zap.Field{zap.String("action", a.Name), zap.String("consumer", a.Consumer), zap.String("topic", a.Topic),
			zap.Int32("partition", a.Partition), zap.String("remote", r.RemoteAddr)}
		return append(f, extra...)
	}
	if h.cfg.authorize == nil {
		h.log.Warn("admin action refused", fields(zap.String("reason", "read-only"))...)
		return "", &apiError{status: http.StatusForbidden, msg: readOnlyMsg}
	}
	who, err := h.cfg.authorize(r, a)
	if err != nil {
		h.log.Warn("admin action refused", fields(zap.String("who", who), zap.Error(err))...)
		return "", &apiError{status: http.StatusForbidden, msg: "forbidden: " + err.Error()}
	}
	if who == "" {
		who = "anonymous"
	}
	return who, nil
}

// record logs an action done (or failed) and keeps it for GET /api/actions.
func (h *Handler) record(r *http.Request, rec *ActionRecord, group string, err error) {
	rec.At = h.now()
	if err != nil {
		rec.Error = err.Error()
	}
	fields := []zap.Field{zap.String("who", rec.Who), zap.String("action", rec.Action)}
	if rec.Consumer != "" {
		fields = append(fields, zap.String("consumer", rec.Consumer), zap.String("group", group))
	}
	if rec.Topic != "" {
		fields = append(fields, zap.String("topic", rec.Topic))
	}
	if rec.Partition >= 0 {
		fields = append(fields, zap.Int32("partition", rec.Partition))
	}
	fields = append(fields, zap.String("detail", rec.Detail), zap.String("remote", r.RemoteAddr))
	if err != nil {
		h.log.Warn("admin action failed", append(fields, zap.Error(err))...)
	} else {
		h.log.Info("admin action", fields...)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.actions) < actionLogSize {
		h.actions = append(h.actions, *rec)
	} else {
		h.actions[h.next] = *rec
		h.next = (h.next + 1) % actionLogSize
	}
}

func (h *Handler) info(w http.ResponseWriter, r *http.Request) error {
	who, err := h.view(r)
	if err != nil {
		return err
	}
	names := make([]string, len(h.consumers))
	for i, e := range h.consumers {
		names[i] = e.name
	}
	writeJSON(w, http.StatusOK, Info{Title: h.cfg.title, ReadOnly: h.cfg.authorize == nil, Who: who, Payloads: h.payloads(r),
		Consumers: names, DLQ: h.cfg.dlq != nil, RefreshMillis: h.cfg.refresh.Milliseconds()})
	return nil
}

func (h *Handler) listActions(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.view(r); err != nil {
		return err
	}
	h.mu.Lock()
	out := make([]ActionRecord, 0, len(h.actions))
	out = append(out, h.actions[h.next:]...)
	out = append(out, h.actions[:h.next]...)
	h.mu.Unlock()
	slices.Reverse(out) // newest first
	writeJSON(w, http.StatusOK, out)
	return nil
}

// parseInt32 reads a non-negative int32 path or query value.
func parseInt32(param, s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 {
		return 0, badParam(param, "must be a partition number (an integer >= 0), got %q", s)
	}
	return int32(n), nil
}

// kafkaError turns an error of the dlq package into an answer.
func kafkaError(err error) error {
	var ce *dlq.ConfigError
	switch {
	case errors.Is(err, dlq.ErrInvalidArgument) && errors.As(err, &ce):
		param := map[string]string{"Filter.Cursor": "cursor", "Filter.Limit": "limit", "Filter.Partitions": "partition",
			"Filter.Until": "until", "dlqTopic": "topic", "ReplayTo": "to"}[ce.Field]
		if param == "" {
			param = ce.Field
		}
		return &apiError{status: http.StatusBadRequest, param: param, msg: err.Error()}
	case errors.Is(err, dlq.ErrUnknownTopic), errors.Is(err, dlq.ErrNotFound):
		return &apiError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, dlq.ErrNotDLQTopic):
		return &apiError{status: http.StatusBadRequest, param: "topic", msg: err.Error()}
	case errors.Is(err, dlq.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, msg: err.Error()}
	}
	return &apiError{status: http.StatusBadGateway, msg: "kafka: " + err.Error()}
}

var errTimeout = errors.New("admin: timed out")
