// Package notify pushes Kafka notifications to browsers over WebSocket,
// routed by channel id: a service publishes a notification for a channel
// (an import, a user, an order) with a Publisher; every instance of the
// notification service runs a Gateway, an http.Handler to which a browser
// opens a socket for its channel; the gateway the browser reached pushes
// the notification, whichever instance published it.
//
// The browser's side of the protocol:
//
//	ws = new WebSocket("wss://host/notify?channel=import-7")          // or &last=<id> to resume
//	ws.onmessage = e => { const f = JSON.parse(e.data); last = f.id;   // keep the last id
//	  if (f.type === "notification") show(f.data) }
//	ws.onclose = e => { if (e.code !== 4002) reconnect(last) }        // 4002: reload state instead
//
// Frames are {"type":"subscribed","channel","id"} first, then
// {"type":"notification","channel","id","data"} in the channel's order, each
// once. Ids are "<partition>-<offset>" (see ID). Close codes: 1001 (the
// gateway is shutting down), 1013 (a resume could not read Kafka),
// CloseTooSlow (4001, the socket's queue filled) — reconnect with last=<id>
// after each — and CloseResumeUnavailable (4002, the last id is too old).
//
// Every gateway instance reads the whole topic and routes to its own
// sockets: simple and coordination-free, with the topic's rate per instance
// as the scale limit (see NewGateway and docs/design.md for the
// alternatives).
package notify
