// whippet admin dashboard: plain JavaScript, no build step, no network but
// the admin API it was served with (relative URLs, so any mount prefix works).
'use strict';

const REFRESH = Math.max(500, Number(document.body.dataset.refresh) || 2000);
const DLQ_REFRESH = Math.max(REFRESH, 5000);

const state = {
  info: null,
  consumers: [],
  actions: [],
  dlqTopics: [],
  dlqTopic: '',
  dlqCount: -1, // records in the selected topic when its list was loaded
  dlqFilter: {limit: '50'},
  dlqCursor: '',
  dlqPage: null,
  selected: new Set(), // positions "<topic>/<partition>/<offset>"
  lastDLQTopics: 0,
  rendered: {},
  busy: false,
};

// ---- helpers ----

const $ = (id) => document.getElementById(id);

// el builds an element; children are nodes or text (never parsed as HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(method, path, body) {
  const opts = {method, headers: {'Accept': 'application/json'}};
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const msg = data && data.error ? data.error : res.status + ' ' + res.statusText;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return data;
}

function fmtNum(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }

function fmtTime(s) {
  if (!s) return '–';
  const d = new Date(s);
  const now = new Date();
  const t = d.toLocaleTimeString('en-GB', {hour12: false});
  if (d.toDateString() === now.toDateString()) return t;
  return d.toISOString().slice(0, 10) + ' ' + t;
}

function fmtAgo(s) {
  if (!s) return '–';
  let sec = Math.round((Date.now() - new Date(s).getTime()) / 1000);
  const future = sec < 0;
  sec = Math.abs(sec);
  let txt;
  if (sec < 60) txt = sec + 's';
  else if (sec < 3600) txt = Math.floor(sec / 60) + 'm ' + (sec % 60) + 's';
  else if (sec < 86400) txt = Math.floor(sec / 3600) + 'h ' + Math.floor((sec % 3600) / 60) + 'm';
  else txt = Math.floor(sec / 86400) + 'd ' + Math.floor((sec % 86400) / 3600) + 'h';
  return future ? 'in ' + txt : txt + ' ago';
}

// bytesText shows a key or value the API sent (text, base64 or null).
function bytesText(v, enc) {
  if (v === null || v === undefined) return el('span', {class: 'muted'}, '(null)');
  if (enc === 'base64') return el('span', {class: 'b64', title: 'not UTF-8: shown as base64'}, 'base64:' + v);
  if (v === '') return el('span', {class: 'muted'}, '(empty)');
  return v;
}

// hidden stands for a payload the API left out: the asker lacks the
// view-payloads permission.
const hiddenTitle = 'hidden: reading keys, values and errors needs the view-payloads permission';
function hidden() { return el('span', {class: 'muted hidden-payload', title: hiddenTitle}, 'hidden'); }

// payload shows a key or other bytes of a record (a dead letter or a
// blocked record) unless the API hid them.
function payload(rec, v, enc) {
  if (rec.payload_hidden) return hidden();
  return bytesText(v, enc);
}

// fmtNext shows when a blocked record is tried again.
function fmtNext(s) {
  if (!s) return '–';
  return new Date(s).getTime() - Date.now() < 1000 ? 'now' : fmtAgo(s);
}

function cut(s, n) { return s && s.length > n ? s.slice(0, n - 1) + '…' : s; }

function toast(msg, kind) {
  const t = el('div', {class: 'toast ' + (kind || 'ok'), role: 'status'}, msg);
  $('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 5000);
}

function banner(msg) {
  const b = $('banner');
  b.hidden = !msg;
  b.textContent = msg || '';
}

const readOnly = () => !state.info || state.info.read_only;
const roTitle = 'read-only: the service gave this admin handler no authorization hook';

function actionButton(label, cls, title, onclick) {
  return el('button', {type: 'button', class: cls, title: readOnly() ? roTitle : title, disabled: readOnly(), onclick}, label);
}

// confirmDialog shows a modal and resolves to true if confirmed.
function confirmDialog(title, text, okLabel, danger, extra) {
  const d = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  const ex = $('confirm-extra');
  ex.replaceChildren(...(extra ? [extra] : []));
  const ok = $('confirm-ok');
  ok.textContent = okLabel || 'Confirm';
  ok.className = danger ? 'danger' : '';
  d.returnValue = '';
  d.showModal();
  ok.focus();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), {once: true});
  });
}

// act runs an action after confirmation, reports and refreshes.
async function act(method, path, body, confirm) {
  if (confirm && !(await confirmDialog(confirm.title, confirm.text, confirm.ok, confirm.danger))) return null;
  try {
    const res = await api(method, path, body);
    if (res && res.detail) toast(res.detail);
    await refresh(true);
    return res;
  } catch (e) {
    toast(e.message, 'error');
    await refresh(true);
    return null;
  }
}

const enc = encodeURIComponent;
const partPath = (c, topic, p, action) => `api/consumers/${enc(c)}/partitions/${enc(topic)}/${p}/${action}`;

// ---- rendering ----

// thead builds a header row; names ending in '#' are numeric (right-aligned).
function thead(...names) {
  return el('thead', {}, el('tr', {}, names.map((n) => n.endsWith('#') ? el('th', {class: 'num'}, n.slice(0, -1)) : el('th', {}, n))));
}

function renderSummary() {
  let parts = 0, blocked = 0, paused = 0, lag = 0, buffered = 0, inflight = null;
  for (const c of state.consumers) {
    parts += c.partitions.length;
    blocked += c.blocked_partitions;
    paused += c.partitions.filter((p) => p.paused).length;
    lag += c.lag;
    buffered += c.buffered;
    if (c.in_flight !== null) inflight = (inflight || 0) + c.in_flight;
  }
  const dead = state.dlqTopics.reduce((n, t) => n + (t.records || 0), 0);
  const tile = (label, value, cls, title) => el('div', {class: 'tile ' + (cls || ''), title},
    el('div', {class: 'value'}, value), el('div', {class: 'label'}, label));
  const tiles = [
    tile('consumers', fmtNum(state.consumers.length)),
    tile('partitions', fmtNum(parts)),
    tile('blocked', fmtNum(blocked), blocked ? 'bad' : 'good', 'partitions held up by a record'),
    tile('paused', fmtNum(paused), paused ? 'warn' : ''),
    tile('lag', fmtNum(lag), '', 'records behind the high watermark, all partitions'),
    tile('buffered', fmtNum(buffered), '', 'records fetched and not yet finished'),
    tile('in flight', fmtNum(inflight), '', inflight === null ? 'give the handler admin.Metrics to see running handlers' : 'handlers running now'),
  ];
  if (state.info && state.info.dlq) tiles.push(tile('dead letters', fmtNum(dead), dead ? 'warn' : '', 'records in the dead-letter topics'));
  $('summary').replaceChildren(...tiles);
}

function renderBlocked() {
  const rows = [];
  for (const c of state.consumers) {
    for (const p of c.partitions) {
      for (const b of p.blocked) rows.push({c, p, b});
    }
  }
  if (!rows.length) {
    $('blocked').replaceChildren(el('p', {class: 'empty good-text'}, 'No partition is blocked.'));
    return;
  }
  const head = thead('Consumer', 'Partition', 'Offset#', 'Key', 'Error', 'Attempts#', 'Blocked for', 'Next attempt', '');
  const body = rows.map(({c, p, b}) => {
    const pos = `${b.topic}/${b.partition}/${b.offset}`;
    const buttons = b.forwarding
      ? el('span', {class: 'badge warn', title: 'the record is done with, but its forward to a retry or dead-letter topic fails; it is retried until Kafka accepts it and cannot be skipped'}, 'forward failing')
      : b.waiting
      ? el('span', {class: 'buttons'},
          el('span', {class: 'badge info', title: 'a retry waiting for its due time (next attempt); its partition is paused until then'}, 'waiting'),
          actionButton('Skip', 'danger skip', 'send the waiting retry to the dead-letter topic without handling it; the partition goes on',
            () => act('POST', partPath(c.name, b.topic, b.partition, 'skip'), undefined,
              {title: `Skip ${pos}?`, text: `The retry at offset ${b.offset} of ${b.topic}/${b.partition} (key ${b.key === null ? '(null)' : b.key}), due ${fmtNext(b.next_attempt)}, goes to the dead-letter topic with reason "skipped" without being handled, and the partition goes on.`, ok: 'Skip record', danger: true})))
      : el('span', {class: 'buttons'},
          actionButton('Skip', 'danger skip', 'send the blocking record to the dead-letter topic; the partition goes on',
            () => act('POST', partPath(c.name, b.topic, b.partition, 'skip'), undefined,
              {title: `Skip ${pos}?`, text: `The record at offset ${b.offset} of ${b.topic}/${b.partition} (key ${b.payload_hidden ? 'hidden' : b.key === null ? '(null)' : b.key}) goes to the dead-letter topic with reason "skipped", and the partition goes on.`, ok: 'Skip record', danger: true})),
          p.skip_all ? null : actionButton('Skip all', 'skip-all', 'dead-letter every failing record of this partition until Block',
            () => act('POST', partPath(c.name, b.topic, b.partition, 'skip-all'), undefined,
              {title: `Skip all failing records of ${b.topic}/${b.partition}?`, text: 'Every record of this partition that fails, this one included, goes straight to the dead-letter topic instead of being retried in place, until you Block it again.', ok: 'Skip all', danger: true})));
    return el('tr', {class: 'blocked-row' + (b.waiting ? ' waiting' : ''), dataset: {pos, consumer: c.name}},
      el('td', {}, c.name),
      el('td', {class: 'mono'}, `${b.topic}/${b.partition}`),
      el('td', {class: 'mono num'}, b.offset),
      el('td', {class: 'mono key'}, payload(b, b.key, b.key_encoding)),
      el('td', {class: 'error', title: b.error}, b.payload_hidden ? hidden() : cut(b.error, 160)),
      el('td', {class: 'num'}, b.attempts),
      el('td', {title: fmtTime(b.since)}, fmtAgo(b.since).replace(' ago', '')),
      el('td', {title: fmtTime(b.next_attempt)}, fmtNext(b.next_attempt)),
      el('td', {class: 'actions'}, buttons));
  });
  $('blocked').replaceChildren(el('table', {class: 'grid blocked'}, head, el('tbody', {}, body)));
}

function stateBadges(p) {
  const out = [];
  if (p.blocked.some((b) => !b.waiting)) out.push(el('span', {class: 'badge bad'}, 'blocked'));
  else if (p.blocked.length) out.push(el('span', {class: 'badge info', title: 'a retry waits for its due time'}, 'waiting'));
  if (p.paused) out.push(el('span', {class: 'badge warn'}, 'paused'));
  if (p.backpressure) out.push(el('span', {class: 'badge info', title: 'fetching paused: the partition buffer is full'}, 'backpressure'));
  if (p.skip_all) out.push(el('span', {class: 'badge bad-outline', title: 'failing records go straight to the dead-letter topic'}, 'skip-all'));
  if (!out.length) out.push(el('span', {class: 'badge good'}, 'running'));
  return out;
}

function renderConsumers() {
  const cards = state.consumers.map((c) => {
    const paused = c.partitions.filter((p) => p.paused).length;
    const meta = el('div', {class: 'meta'},
      el('span', {}, 'group ', el('b', {class: 'mono'}, c.group)),
      el('span', {}, 'topics ', el('b', {class: 'mono'}, c.topics.join(', '))),
      el('span', {}, 'partitions ', el('b', {}, c.partitions.length)),
      el('span', {}, 'lag ', el('b', {}, fmtNum(c.lag))),
      el('span', {}, 'buffered ', el('b', {}, fmtNum(c.buffered))),
      el('span', {}, 'in flight ', el('b', {}, fmtNum(c.in_flight))),
      c.blocked_partitions ? el('span', {class: 'badge bad'}, `${c.blocked_partitions} blocked`) : null,
      paused ? el('span', {class: 'badge warn'}, `${paused} paused`) : null);
    const ctl = c.paused
      ? actionButton('Resume consumer', 'resume-consumer', 'resume every partition (those paused one by one stay paused)',
          () => act('POST', `api/consumers/${enc(c.name)}/resume`))
      : actionButton('Pause consumer', 'pause-consumer', 'stop fetching and handling every partition; handlers under way finish',
          () => act('POST', `api/consumers/${enc(c.name)}/pause`, undefined,
            {title: `Pause consumer ${c.name}?`, text: 'Every partition stops being fetched and handled until you resume it. Handlers under way finish.', ok: 'Pause consumer'}));
    let table;
    if (!c.partitions.length) {
      table = el('p', {class: 'empty'}, 'No partition assigned to this instance now (the group may still be joining, or other instances own them all).');
    } else {
      const head = thead('Partition', 'State', 'Next offset#', 'Lag#', 'Buffered#', '');
      const rows = c.partitions.map((p) => el('tr', {class: 'part-row' + (p.blocked.some((b) => !b.waiting) ? ' is-blocked' : ''), dataset: {tp: `${p.topic}/${p.partition}`}},
        el('td', {class: 'mono tp'}, p.topic + '/', el('b', {}, p.partition)),
        el('td', {class: 'state'}, stateBadges(p)),
        el('td', {class: 'num'}, p.next_offset < 0 ? '–' : p.next_offset),
        el('td', {class: 'num' + (p.lag > 0 ? ' strong' : '')}, fmtNum(p.lag)),
        el('td', {class: 'num'}, fmtNum(p.buffered)),
        el('td', {class: 'actions'}, el('span', {class: 'buttons'},
          p.paused
            ? actionButton('Resume', 'resume', 'resume fetching and handling this partition', () => act('POST', partPath(c.name, p.topic, p.partition, 'resume')))
            : actionButton('Pause', 'pause', 'stop fetching and handling this partition', () => act('POST', partPath(c.name, p.topic, p.partition, 'pause'))),
          p.skip_all
            ? actionButton('Block', 'block', 'failing records are retried in place again, as the retry policy says', () => act('POST', partPath(c.name, p.topic, p.partition, 'block')))
            : actionButton('Skip all', 'skip-all', 'dead-letter every failing record of this partition until Block',
                () => act('POST', partPath(c.name, p.topic, p.partition, 'skip-all'), undefined,
                  {title: `Skip all failing records of ${p.topic}/${p.partition}?`, text: 'Every record of this partition that fails goes straight to the dead-letter topic instead of being retried in place, until you Block it again.', ok: 'Skip all', danger: true})),
          actionButton('Seek…', 'seek', 'move this partition (or every partition of its topic here) to an offset, a time or the end',
            () => seek(c, p))))));
      table = el('table', {class: 'grid parts'}, head, el('tbody', {}, rows));
    }
    return el('article', {class: 'card consumer', dataset: {consumer: c.name}},
      el('header', {}, el('h3', {}, c.name, c.paused ? el('span', {class: 'badge warn'}, 'consumer paused') : null), ctl),
      meta, table);
  });
  $('consumers').replaceChildren(...cards);
}

function renderActions() {
  if (!state.actions.length) {
    $('actions').replaceChildren(el('p', {class: 'empty'}, 'No action taken yet.'));
    return;
  }
  const head = thead('Time', 'Who', 'Action', 'Target', 'Result');
  const rows = state.actions.slice(0, 50).map((a) => {
    let target = a.consumer || '';
    if (a.topic) target += (target ? ' · ' : '') + a.topic + (a.partition >= 0 ? '/' + a.partition : '');
    return el('tr', {class: 'action-row' + (a.error ? ' failed' : '')},
      el('td', {class: 'nowrap'}, fmtTime(a.at)),
      el('td', {}, a.who),
      el('td', {}, el('span', {class: 'badge plain'}, a.action)),
      el('td', {class: 'mono'}, target),
      el('td', {class: a.error ? 'error' : ''}, a.error ? 'failed: ' + a.error : a.detail));
  });
  $('actions').replaceChildren(el('table', {class: 'grid actions-log'}, head, el('tbody', {}, rows)));
}

// seek asks where to move a partition (or every partition of its topic
// assigned to this instance) and moves it.
async function seek(c, p) {
  const radio = (name, value, checked) => el('input', {type: 'radio', name, value, checked});
  const one = radio('seek-scope', 'one', true), all = radio('seek-scope', 'all');
  const byOffset = radio('seek-to', 'offset', true), byTime = radio('seek-to', 'time'), toEnd = radio('seek-to', 'end');
  const offset = el('input', {name: 'seek-offset', type: 'number', min: 0, class: 'num', value: p.next_offset < 0 ? 0 : p.next_offset});
  const time = el('input', {name: 'seek-time', placeholder: '1h, 30m or RFC 3339', size: 20});
  offset.addEventListener('focus', () => { byOffset.checked = true; });
  time.addEventListener('focus', () => { byTime.checked = true; });
  const blocked = p.blocked.map((b) => b.offset);
  const extra = el('div', {class: 'seek-form'},
    el('fieldset', {}, el('legend', {}, 'Partitions'),
      el('label', {}, one, ` ${p.topic}/${p.partition} only`),
      el('label', {}, all, ` every partition of ${p.topic} assigned to this instance`)),
    el('fieldset', {}, el('legend', {}, 'To'),
      el('label', {}, byOffset, ' offset ', offset),
      el('label', {}, byTime, ' the first record at or after ', time),
      el('label', {}, toEnd, ' the end (skip what is there now)')));
  const ok = await confirmDialog(`Seek ${p.topic}/${p.partition}?`,
    'The partition stops, its handlers under way finish, and it goes on from the new position, which is committed: records before it are not handled, records after it are handled again.' +
    (blocked.length ? ` The record(s) blocking it (offset ${blocked.join(', ')}) are let go without being dead-lettered; they are handled again if the new position is at or before them.` : ''),
    'Seek', true, extra);
  if (!ok) return;
  let body;
  if (toEnd.checked) body = {end: true};
  else if (byTime.checked) body = {time: time.value.trim()};
  else body = {offset: Number(offset.value)};
  const path = all.checked
    ? `api/consumers/${enc(c.name)}/topics/${enc(p.topic)}/seek`
    : partPath(c.name, p.topic, p.partition, 'seek');
  await act('POST', path, body);
}

// ---- dead letters ----

function renderDLQTopics() {
  const tabs = state.dlqTopics.map((t) => el('button', {
    type: 'button', class: 'tab' + (t.topic === state.dlqTopic ? ' active' : ''), dataset: {topic: t.topic},
    title: t.source ? `dead letters of ${t.source} (group ${t.group}, consumer ${t.consumer})` : t.topic,
    onclick: () => selectDLQTopic(t.topic),
  }, el('span', {class: 'mono'}, t.topic), ' ',
  el('span', {class: 'count' + (t.records ? ' some' : '')}, t.exists ? fmtNum(t.records) : 'no topic yet')));
  $('dlq-topics').replaceChildren(...tabs);
}

function selectDLQTopic(topic) {
  if (topic === state.dlqTopic) return;
  state.dlqTopic = topic;
  state.dlqCursor = '';
  state.selected.clear();
  renderDLQTopics();
  loadDLQ();
}

function dlqQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state.dlqFilter)) if (v !== '') q.set(k, v);
  if (state.dlqCursor) q.set('cursor', state.dlqCursor);
  return q.toString();
}

const filtered = () => ['key', 'error', 'reason', 'since', 'until'].some((k) => state.dlqFilter[k]);

async function loadDLQ() {
  if (!state.dlqTopic) return;
  const topic = state.dlqTopic;
  const t = state.dlqTopics.find((x) => x.topic === topic);
  state.dlqCount = t ? t.records : -1;
  if (t && !t.exists) {
    state.dlqPage = {topic, records: [], next: ''};
    renderDLQ();
    return;
  }
  try {
    const page = await api('GET', `api/dlq/${enc(topic)}?${dlqQuery()}`);
    if (topic !== state.dlqTopic) return;
    state.dlqPage = page;
    renderDLQ();
  } catch (e) {
    state.dlqPage = null;
    $('dlq-list').replaceChildren(el('p', {class: 'error-box'}, e.message));
  }
}

function renderDLQ() {
  const page = state.dlqPage;
  if (!page) return;
  const recs = page.records;
  for (const pos of [...state.selected]) if (!recs.some((r) => r.position === pos)) state.selected.delete(pos);
  $('dlq-replay-selected').textContent = state.selected.size ? `Replay selected (${state.selected.size})` : 'Replay selected';
  $('dlq-replay-selected').disabled = readOnly() || !state.selected.size;
  $('dlq-replay-all').textContent = filtered() ? 'Replay all matching' : 'Replay all';
  const t = state.dlqTopics.find((x) => x.topic === page.topic);
  const empty = !t || !t.exists || !t.records;
  for (const id of ['dlq-replay-all', 'dlq-purge']) {
    $(id).disabled = readOnly() || empty;
    $(id).title = readOnly() ? roTitle : empty ? 'the topic holds no record' : '';
  }
  $('dlq-next').hidden = !page.next;
  $('dlq-first').hidden = !state.dlqCursor;
  if (!recs.length) {
    $('dlq-list').replaceChildren(el('p', {class: 'empty'}, filtered() || state.dlqCursor ? 'No dead-letter record matches.' : 'No dead-letter record in ' + page.topic + '.'));
    return;
  }
  const all = el('input', {type: 'checkbox', title: 'select all on this page', checked: recs.every((r) => state.selected.has(r.position)),
    onchange: (ev) => { for (const r of recs) ev.target.checked ? state.selected.add(r.position) : state.selected.delete(r.position); renderDLQ(); }});
  const head = thead('Position', 'Dead-lettered', 'Key', 'Reason', 'Attempts#', 'Error', 'Original', '');
  head.firstChild.prepend(el('th', {class: 'check'}, all));
  const rows = recs.map((r) => el('tr', {class: 'dlq-row' + (state.selected.has(r.position) ? ' selected' : ''), dataset: {pos: r.position}},
    el('td', {class: 'check'}, el('input', {type: 'checkbox', checked: state.selected.has(r.position),
      onchange: (ev) => { ev.target.checked ? state.selected.add(r.position) : state.selected.delete(r.position); renderDLQ(); }})),
    el('td', {class: 'mono nowrap'}, `${r.partition}/${r.offset}`),
    el('td', {class: 'nowrap', title: r.timestamp}, fmtTime(r.timestamp)),
    el('td', {class: 'mono key'}, payload(r, r.key, r.key_encoding)),
    el('td', {}, r.reason ? el('span', {class: 'badge reason-' + r.reason}, r.reason) : el('span', {class: 'muted'}, '–')),
    el('td', {class: 'num'}, r.attempts),
    el('td', {class: 'error', title: r.error}, r.payload_hidden ? hidden() : cut(r.error, 140)),
    el('td', {class: 'mono nowrap'}, r.original_topic ? `${r.original_topic}/${r.original_partition}/${r.original_offset}` : '–'),
    el('td', {class: 'actions'}, el('span', {class: 'buttons'},
      el('button', {type: 'button', class: 'plain view', onclick: () => showRecord(r)}, 'View'),
      actionButton('Replay', 'replay', 'produce it back to its original topic as a fresh first attempt',
        () => replay({positions: [{partition: r.partition, offset: r.offset}]}, `Replay ${r.position}?`,
          `The record goes back to ${r.original_topic || 'its original topic'} without its retry headers, marked whippet-replayed-from. The dead-letter record stays: replaying twice produces twice.`))))));
  $('dlq-list').replaceChildren(el('table', {class: 'grid dlq'}, head, el('tbody', {}, rows)));
}

async function showRecord(r) {
  let full = r;
  try {
    full = await api('GET', `api/dlq/${enc(r.topic)}/${r.partition}/${r.offset}`);
  } catch (e) {
    toast(e.message, 'error');
  }
  const row = (k, v) => el('tr', {}, el('th', {}, k), el('td', {}, v));
  const rows = [
    row('position', full.position),
    row('dead-lettered', full.timestamp || '–'),
    row('reason', full.reason || '–'),
    row('attempts', String(full.attempts)),
    row('error', full.payload_hidden ? hidden() : full.error || '–'),
    row('group', full.group || '–'),
    row('original', full.original_topic ? `${full.original_topic}/${full.original_partition}/${full.original_offset} at ${full.original_timestamp || '?'}` : '–'),
    row('first failure', full.first_failure || '–'),
    row('last failure', full.last_failure || '–'),
    full.replayed_from ? row('replayed', `from ${full.replayed_from} at ${full.replayed_at} (replay ${full.replay_count})`) : null,
    row('key', payload(full, full.key, full.key_encoding)),
    !full.dead_letter ? row('note', 'no retry headers: not written by a whippet consumer') : null,
  ];
  const headers = full.headers.length
    ? el('table', {class: 'kv'}, full.headers.map((h) => row(h.key, full.payload_hidden ? hidden() : bytesText(h.value, h.encoding))))
    : el('p', {class: 'muted'}, 'no headers');
  let value = full.payload_hidden ? hiddenTitle : full.value;
  if (value !== null && !full.payload_hidden && full.value_encoding !== 'base64') {
    try { value = JSON.stringify(JSON.parse(value), null, 2); } catch (e) { /* not JSON */ }
  }
  $('record-title').textContent = 'Dead letter ' + full.position;
  $('record-body').replaceChildren(
    el('table', {class: 'kv'}, rows),
    el('h4', {}, `Headers (${full.headers.length})`), headers,
    el('h4', {}, `Value (${fmtNum(full.value_size)} bytes${full.value_encoding === 'base64' ? ', base64' : ''}${full.value_truncated ? ', cut' : ''})`),
    el('pre', {class: 'value'}, value === null ? '(null)' : value));
  $('record').showModal();
}

async function replay(body, title, text) {
  const res = await act('POST', `api/dlq/${enc(state.dlqTopic)}/replay`, body, {title, text, ok: 'Replay'});
  if (!res) return;
  state.selected.clear();
  renderDLQ();
  toast(`Replayed ${res.replayed.length} record(s)` + (res.skipped.length ? `; skipped ${res.skipped.length}: ${res.skipped.map((s) => s.from + ' (' + s.reason + ')').join(', ')}` : ''), res.skipped.length ? 'warn' : 'ok');
}

function currentFilter() {
  const f = {};
  for (const k of ['key', 'error', 'reason', 'since', 'until']) if (state.dlqFilter[k]) f[k] = state.dlqFilter[k];
  return f;
}

async function replayAll() {
  const body = filtered() ? {filter: currentFilter()} : {all: true};
  let preview;
  try {
    preview = await api('POST', `api/dlq/${enc(state.dlqTopic)}/replay`, {...body, dry_run: true});
  } catch (e) {
    toast(e.message, 'error');
    return;
  }
  if (!preview.replayed.length) {
    toast('Nothing to replay' + (preview.skipped.length ? `: ${preview.skipped.length} record(s) cannot be replayed` : ''), 'warn');
    return;
  }
  await replay(body, `Replay ${preview.replayed.length} record(s) of ${state.dlqTopic}?`,
    `${filtered() ? 'Every record the filter selects' : 'Every record of the topic'} goes back to its original topic as a fresh first attempt` +
    (preview.skipped.length ? `; ${preview.skipped.length} cannot be replayed and will be skipped.` : '.'));
}

async function purge() {
  const topic = state.dlqTopic;
  const before = el('input', {name: 'before', placeholder: '7d, 2h or RFC 3339', size: 18});
  const allRadio = el('input', {type: 'radio', name: 'scope', value: 'all', checked: true});
  const beforeRadio = el('input', {type: 'radio', name: 'scope', value: 'before'});
  before.addEventListener('focus', () => { beforeRadio.checked = true; });
  const extra = el('div', {class: 'purge-scope'},
    el('label', {}, allRadio, ' every record'),
    el('label', {}, beforeRadio, ' records dead-lettered before ', before));
  const ok = await confirmDialog(`Purge ${topic}?`,
    'Purged records are deleted for good. Kafka deletes whole prefixes of partitions, so a purge takes everything, or everything dead-lettered before a time; it cannot select by key or error. You will see how many records it deletes before it does.',
    'Preview purge', true, extra);
  if (!ok) return;
  const body = beforeRadio.checked ? {before: before.value.trim()} : {all: true};
  let preview;
  try {
    preview = await api('POST', `api/dlq/${enc(topic)}/purge`, {...body, dry_run: true});
  } catch (e) {
    toast(e.message, 'error');
    return;
  }
  if (!preview.deleted) {
    toast('Nothing to purge (' + preview.scope + ')', 'warn');
    return;
  }
  const res = await act('POST', `api/dlq/${enc(topic)}/purge`, body,
    {title: `Delete ${fmtNum(preview.deleted)} record(s) of ${topic} for good?`, text: `Scope: ${preview.scope}. This cannot be undone.`, ok: 'Purge', danger: true});
  if (res) {
    state.dlqCursor = '';
    state.selected.clear();
  }
}

// ---- refresh ----

let timer = null;
let lastDLQ = 0;

async function refresh(force) {
  if (state.busy && !force) return;
  state.busy = true;
  try {
    const wantDLQ = state.info && state.info.dlq && (force || Date.now() - lastDLQ >= DLQ_REFRESH);
    const [consumers, actions, topics] = await Promise.all([
      api('GET', 'api/consumers'),
      api('GET', 'api/actions'),
      wantDLQ ? api('GET', 'api/dlq') : Promise.resolve(null),
    ]);
    banner('');
    const cj = JSON.stringify(consumers);
    if (cj !== state.rendered.consumers || force) {
      state.consumers = consumers;
      state.rendered.consumers = cj;
      renderBlocked();
      renderConsumers();
    } else {
      // only the relative times move: keep the DOM (and any hovered button)
      renderBlockedTimes();
    }
    const aj = JSON.stringify(actions);
    if (aj !== state.rendered.actions) {
      state.actions = actions;
      state.rendered.actions = aj;
      renderActions();
    }
    if (topics) {
      lastDLQ = Date.now();
      state.dlqTopics = topics;
      if (!state.dlqTopic && topics.length) state.dlqTopic = topics[0].topic;
      renderDLQTopics();
      const t = topics.find((x) => x.topic === state.dlqTopic);
      if (!state.dlqPage || force || (t && t.records !== state.dlqCount)) await loadDLQ();
    }
    renderSummary();
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString('en-GB', {hour12: false});
  } catch (e) {
    if (e.status === 403) {
      $('auto').checked = false; // asking again will not help
      banner('Forbidden: ' + e.message + ' (auto-refresh stopped)');
    } else {
      banner('Cannot reach the admin API: ' + e.message + ' (retrying)');
    }
  } finally {
    state.busy = false;
  }
}

function renderBlockedTimes() {
  const rows = document.querySelectorAll('#blocked tr.blocked-row');
  let i = 0;
  for (const c of state.consumers) {
    for (const p of c.partitions) {
      for (const b of p.blocked) {
        const tr = rows[i++];
        if (!tr) return;
        tr.children[6].textContent = fmtAgo(b.since).replace(' ago', '');
        tr.children[7].textContent = fmtNext(b.next_attempt);
      }
    }
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    if ($('auto').checked && !document.hidden && !document.querySelector('dialog[open]')) await refresh(false);
    schedule();
  }, REFRESH);
}

async function start() {
  try {
    state.info = await api('GET', 'api/info');
  } catch (e) {
    if (e.status === 403) {
      banner('Forbidden: ' + e.message);
      return;
    }
    banner('Cannot load the admin API: ' + e.message + ' (retrying)');
    setTimeout(start, REFRESH);
    return;
  }
  const info = state.info;
  document.title = info.title + ' · whippet admin';
  $('who').replaceChildren(info.read_only
    ? el('span', {class: 'badge warn', title: roTitle}, 'read-only')
    : el('span', {}, 'signed in as ', el('b', {}, info.who || 'anonymous')));
  $('dlq-section').hidden = !info.dlq;
  for (const name of ['key', 'error']) {
    // Filtering by them would tell hidden values apart: the API refuses it.
    const input = $('dlq-filter').elements[name];
    input.disabled = !info.payloads;
    input.title = info.payloads ? '' : hiddenTitle;
  }
  await refresh(true);
  schedule();
}

$('refresh').addEventListener('click', () => refresh(true));
$('dlq-filter').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const fd = new FormData(ev.target);
  state.dlqFilter = {};
  for (const [k, v] of fd.entries()) state.dlqFilter[k] = String(v).trim();
  state.dlqCursor = '';
  state.selected.clear();
  loadDLQ();
});
$('dlq-clear').addEventListener('click', () => {
  $('dlq-filter').reset();
  state.dlqFilter = {limit: '50'};
  state.dlqCursor = '';
  state.selected.clear();
  loadDLQ();
});
$('dlq-next').addEventListener('click', () => { state.dlqCursor = state.dlqPage.next; loadDLQ(); });
$('dlq-first').addEventListener('click', () => { state.dlqCursor = ''; loadDLQ(); });
$('dlq-replay-selected').addEventListener('click', () => {
  const positions = [...state.selected].map((pos) => {
    const parts = pos.split('/');
    return {partition: Number(parts[parts.length - 2]), offset: Number(parts[parts.length - 1])};
  });
  replay({positions}, `Replay ${positions.length} selected record(s)?`,
    'They go back to their original topics without their retry headers, marked whippet-replayed-from. The dead-letter records stay: replaying twice produces twice.');
});
$('dlq-replay-all').addEventListener('click', replayAll);
$('dlq-purge').addEventListener('click', purge);
document.addEventListener('visibilitychange', () => { if (!document.hidden && $('auto').checked) refresh(false); });

start();
