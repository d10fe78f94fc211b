// Package admin is the operator's view of whippet consumers: an http.Handler
// a service mounts on its own mux, with a JSON API and a dashboard page
// (embedded HTML, CSS and JavaScript: no build step, no CDN, no internet
// needed) that show what each consumer is doing and let an on-call engineer
// act without a redeploy.
//
//	h, err := admin.New(
//		admin.Consumer("renewals", c),
//		admin.DLQ(dlqClient),
//		admin.Authorize(func(r *http.Request, a admin.Action) (string, error) {
//			user, ok := sso.User(r) // the service's own authentication
//			if !ok || (a.Name != admin.ActionView && !user.OnCall) {
//				return "", errors.New("on-call engineers only")
//			}
//			return user.Name, nil
//		}),
//		admin.Logger(logger),
//	)
//	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
//
// # What it shows and does
//
// For every registered consumer: its group and topics, the partitions
// assigned to this instance with their next offset, lag, buffered (in
// flight) records, paused and backpressure state, and the records that block
// a partition (key, offset, error, attempts, next attempt). Actions: skip the
// blocking record, skip all failing records of a partition until block again,
// pause and resume a partition or the whole consumer, seek a partition (or
// every partition of a topic assigned to this instance) to an offset, a time
// or the end (consumer.Consumer.SeekTo: records that blocked it are let go,
// not dead-lettered). With DLQ, the
// dead-letter topics of the consumers: browse (filtered, paged), view one
// record, replay selected records, the records a filter selects or all, and
// purge all or before a time (dry runs first on the page).
//
// # Authorization and the action log
//
// Without Authorize the handler is read-only: reads are served without
// payloads, actions get 403. With it, the hook sees every API request by
// action name (see AuthorizeFunc for an example) and names who makes it:
//
//   - ActionView: every read. Refused: 403.
//   - ActionViewPayloads: reading what records say: keys, values and header
//     values of dead letters, keys of blocked records, and the error texts
//     of both. Dead-letter records carry business payloads, often personal
//     data, so seeing the dashboard does not imply seeing them. Refused (and
//     without a hook), they are left out of the answers (PayloadHidden), and
//     filtering by key or error text is refused, since it would tell hidden
//     values apart.
//   - ActionSkip, ActionSkipAll, ActionBlock, ActionPause, ActionResume,
//     ActionSeek (Action.SeekTo says where), ActionPauseConsumer,
//     ActionResumeConsumer: the consumer actions.
//   - ActionReplayDryRun and ActionReplay, ActionPurgeDryRun and
//     ActionPurge: a dry run has a name of its own, so that a hook can let an
//     operator preview a replay or purge without letting them do it.
//
// Every action, done, failed or refused, is logged to the Logger with the
// name the hook gave, and the last 200 are served at GET /api/actions and
// shown on the page. Actions are POST requests, and cross-origin browser
// POSTs are refused (http.CrossOriginProtection), so a page on another site
// cannot act with an operator's cookies.
//
// # Replay targets
//
// A replay sends records only to the topic the dead-letter topic belongs to
// (dlq.ReplaySource for the registered consumers' dead-letter topics; for
// those given to DLQTopics, the topic the name and each record's group
// header say). The whippet-original-topic header alone is not trusted: a
// producer of the consumed topic can set it, and "replay all" would write
// wherever it points. A record that names another topic is skipped
// (SkippedRecord.OtherTopic); to replay elsewhere the operator names the
// target (ReplayRequest.To), which the hook sees as Action.ReplayTo.
//
// # Routes
//
// Under the mount prefix:
//
//	GET  /                                    the dashboard page
//	GET  /static/...                          its assets
//	GET  /api/info                            title, read-only, who is asking, payloads shown
//	GET  /api/consumers                       every consumer with partitions and blocked records
//	GET  /api/consumers/{name}                one consumer
//	GET  /api/consumers/{name}/partitions     its assigned partitions
//	GET  /api/consumers/{name}/blocked        its blocked records
//	POST /api/consumers/{name}/pause|resume   the whole consumer
//	POST /api/consumers/{name}/partitions/{topic}/{partition}/skip|skip-all|block|pause|resume
//	POST /api/consumers/{name}/partitions/{topic}/{partition}/seek  body: SeekRequest
//	POST /api/consumers/{name}/topics/{topic}/seek   every partition of topic assigned here; body: SeekRequest
//	GET  /api/actions                         the action log, newest first
//	GET  /api/dlq                             the dead-letter topics and their record counts
//	GET  /api/dlq/{topic}?key=&error=&reason=&partition=&since=&until=&limit=&cursor=
//	GET  /api/dlq/{topic}/{partition}/{offset} one record, whole
//	POST /api/dlq/{topic}/replay              body: ReplayRequest
//	POST /api/dlq/{topic}/purge               body: PurgeRequest
//
// Answers are JSON (the types of this package); errors are an ErrorResponse
// with 400 (naming the bad parameter), 403, 404, 405, 409 (skipping a
// partition that is not blocked, or whose blocking record is a failing
// forward, which cannot be skipped), 502 (Kafka failed) or 504 (Timeout).
// The `whippet admin` command drives the same API from a terminal.
//
// The handler sees only this process's consumers: in a group spread over
// several instances, each instance serves the partitions assigned to it.
package admin
