// The live state of the dashboard: what the REST API last said, the WebSocket's event stream,
// and notifications. Events update what they carry at once (progress, spend, an agent's state)
// and schedule a refresh of the figures: coalesced, at most one in flight and at most one a
// second while events stream, so ten open pages do not load the control plane. A slow poll
// covers anything the stream missed.

import { reactive } from 'vue'
import { accessToken, api, refresh, session, tokenFresh } from './api'
import { pct, usd } from './format'
import type { AgentEntry, Health, IhEvent, PolicyList, Protection, Trace, Usage } from './types'

/** Events kept in the log. */
const MAX_EVENTS = 500
/** Latency points kept for the chart. */
const MAX_POINTS = 120
/** A refresh runs at most this long after the event that asked for it... */
const REFRESH_DELAY_MS = 150
/** ...and no sooner than this after the one before. */
const REFRESH_GAP_MS = 1000
/** And once more this long after the last event: the process that streams an event may write
 * it to the store a moment later (its recorder batches every 50 ms). */
const SETTLE_MS = 600
/** Without events, figures are refreshed this often anyway. */
const POLL_MS = 5000

export type Conn = 'connecting' | 'open' | 'closed'
export type LogShow = 'important' | 'all' | 'warn' | 'error'

export type ToastKind = 'circuit' | 'pii' | 'budget' | 'exceeded' | 'failure'

export interface Toast {
  id: number
  kind: ToastKind
  title: string
  body: string
  count: number
  agentId: string | null
  ts: number
  /** Budget notifications: the limit the agent ran under and its spend. */
  limitUsd?: number
  spentUsd?: number
  /** When it goes by itself (ms since the epoch); held while the pointer or focus is on it. */
  expires: number
  held: boolean
  /** What its action did, shown until it goes. */
  done?: string
}

/** How long each notification stays unless the operator is on it. */
export const TOAST_LIFE_MS: Record<ToastKind, number> = {
  pii: 8000,
  circuit: 10_000,
  budget: 20_000,
  exceeded: 20_000,
  failure: 15_000,
}
/** Notifications shown at once; older ones give way. */
const MAX_TOASTS = 3

/** The end of the run of the agent whose `ironhost start` serves this page. */
export interface RunEnd {
  agentId: string
  state: string
  exitCode: number | null
  ts: number
}

export const live = reactive({
  conn: 'connecting' as Conn,
  /** When the socket last closed (for the banner). */
  downSince: 0 as number,
  reconnectIn: 0 as number,
  agents: [] as AgentEntry[],
  policies: null as PolicyList | null,
  /** Usage of the agent the overview shows. */
  agentUsage: null as Usage | null,
  protection: null as Protection | null,
  health: null as Health | null,
  events: [] as IhEvent[],
  /** (time, latency ms, model, agent) of recent LLM calls, oldest first. */
  latency: [] as { ts: number; ms: number; model: string; agent: string }[],
  toasts: [] as Toast[],
  /** The agent the overview shows; empty: the most recent one. */
  selected: '' as string,
  loadError: '' as string,
  loaded: false,
  /** The view on screen (the policies' figures are fetched for it or on policy events). */
  view: 'overview' as string,
  runEnd: null as RunEnd | null,
  /** The event log's filter text and which events it shows (kept across views). */
  logQuery: '' as string,
  logShow: 'important' as LogShow,
})

let socket: WebSocket | null = null
let stopped = true
let backoff = 500
let reconnectTimer: number | undefined
let pollTimer: number | undefined
let refreshTimer: number | undefined
let settleTimer: number | undefined
let refreshing = false
let refreshAgain = false
let lastRefresh = 0
/** The states agents ended in, as streamed: a refresh older than the event does not undo them. */
const ends = new Map<string, RunEnd>()
const TERMINAL = ['completed', 'failed', 'stopped', 'lost']
let toastTimer: number | undefined
/** Fetch the chain with the next refresh (a policy event, the policies view, the slow poll). */
let policiesDue = true
let toastSeq = 0
const seen = new Set<string>()
/** Bumped at login and logout: answers to an earlier session's requests are dropped. */
let epoch = 0
/** Bumped by every change of the chain made here: a refresh begun before it must not undo it. */
let policyWrites = 0

/** Show the chain a change through the API answered with. */
export function setPolicies(list: PolicyList): void {
  policyWrites++
  live.policies = list
  scheduleRefresh()
}

/** What tells events apart (stored and streamed copies of one event share it). */
export function eventKey(e: IhEvent): string {
  return `${e.agent_id ?? ''}|${e.seq ?? e.id ?? ''}|${e.type}|${e.ts_ms}`
}

/** Fetch every figure the panels show. */
export async function refreshAll(): Promise<void> {
  if (refreshing) {
    refreshAgain = true
    return
  }
  refreshing = true
  lastRefresh = Date.now()
  const mine = epoch
  const writes = policyWrites
  const withPolicies = policiesDue || live.view === 'policies' || live.policies === null
  policiesDue = false
  try {
    const [agents, policies, protection, health] = await Promise.all([
      api<AgentEntry[]>('GET', '/agents'),
      withPolicies ? api<PolicyList>('GET', '/policies') : Promise.resolve(null),
      api<Protection>('GET', '/protection'),
      live.health ? Promise.resolve(live.health) : api<Health>('GET', '/health'),
    ])
    const id = selectedId(agents)
    const agentUsage = id ? await api<Usage>('GET', `/usage/by-agent/${encodeURIComponent(id)}`) : null
    if (mine !== epoch) return
    // A refresh that began before an agent's end was streamed must not bring it back to life.
    for (const a of agents) {
      const end = ends.get(a.agent.id)
      if (end && end.ts >= a.agent.updated_ms && !TERMINAL.includes(a.agent.state)) {
        a.agent.state = a.metrics.state = end.state
        a.agent.exit_code = end.exitCode
      }
    }
    Object.assign(live, { agents, agentUsage, protection, health, loadError: '', loaded: true })
    if (policies && writes === policyWrites) live.policies = policies
  } catch (e) {
    if (mine === epoch) {
      live.loadError = (e as Error).message
      if (withPolicies) policiesDue = true
    }
  } finally {
    refreshing = false
    if (refreshAgain) {
      refreshAgain = false
      scheduleRefresh()
    }
  }
}

/** The agent the overview shows: the chosen one, else the latest running one, else the latest. */
export function selectedId(agents: AgentEntry[] = live.agents): string | null {
  if (live.selected && agents.some((a) => a.agent.id === live.selected)) return live.selected
  const latest = [...agents].sort((a, b) => b.agent.updated_ms - a.agent.updated_ms)
  return (latest.find((a) => a.agent.state === 'running') ?? latest[0])?.agent.id ?? null
}

export function scheduleRefresh(): void {
  if (refreshTimer !== undefined) return
  const wait = Math.max(REFRESH_DELAY_MS, lastRefresh + REFRESH_GAP_MS - Date.now())
  refreshTimer = window.setTimeout(() => {
    refreshTimer = undefined
    void refreshAll()
  }, wait)
}

/** What an event says about its agent, shown before the next refresh confirms it. */
function applyToAgent(e: IhEvent): void {
  const entry = live.agents.find((a) => a.agent.id === e.agent_id)
  if (e.type === 'agent_stopped' && live.health?.agent_id && e.agent_id === live.health.agent_id) {
    live.runEnd = {
      agentId: e.agent_id,
      state: String(e.state ?? 'completed'),
      exitCode: typeof e.exit_code === 'number' ? e.exit_code : null,
      ts: e.ts_ms,
    }
  }
  if (!entry) return
  switch (e.type) {
    case 'agent_progress': {
      const total = typeof e.total === 'number' ? e.total : null
      const done = Number(e.done)
      const progress = {
        done,
        total,
        unit: (e.unit as string | null) ?? null,
        percent: total ? Math.round((done * 1000) / total) / 10 : null,
      }
      entry.agent.progress = progress
      entry.metrics.progress = progress
      break
    }
    case 'cost_update':
      if (typeof e.spent_usd === 'number') entry.metrics.cost_usd = Math.max(entry.metrics.cost_usd, e.spent_usd)
      break
    case 'agent_started':
      ends.delete(entry.agent.id)
      entry.agent.state = entry.metrics.state = 'running'
      break
    case 'agent_stopped':
      ends.set(entry.agent.id, {
        agentId: entry.agent.id,
        state: String(e.state ?? 'completed'),
        exitCode: typeof e.exit_code === 'number' ? e.exit_code : null,
        ts: e.ts_ms,
      })
      entry.agent.state = entry.metrics.state = String(e.state ?? 'completed')
      entry.agent.exit_code = typeof e.exit_code === 'number' ? e.exit_code : null
      break
  }
}

function addEvent(e: IhEvent, notify: boolean): void {
  const key = eventKey(e)
  if (seen.has(key)) return
  seen.add(key)
  live.events.push(e)
  if (live.events.length > MAX_EVENTS) {
    for (const old of live.events.splice(0, live.events.length - MAX_EVENTS)) seen.delete(eventKey(old))
  }
  if (notify) applyToAgent(e)
  if (e.type.startsWith('policy')) policiesDue = true
  if (e.type === 'llm_call' && typeof e.latency_ms === 'number') {
    live.latency.push({ ts: e.ts_ms, ms: e.latency_ms, model: String(e.model ?? ''), agent: e.agent_id ?? '' })
    if (live.latency.length > MAX_POINTS) live.latency.splice(0, live.latency.length - MAX_POINTS)
  }
  if (notify) toastFor(e)
}

function detail(e: IhEvent): Record<string, unknown> {
  return (e.detail as Record<string, unknown>) ?? {}
}

/** Raise (or add to) a notification for the events an operator must see. */
function toastFor(e: IhEvent): void {
  const d = detail(e)
  const agentId = e.agent_id ?? null
  let t: Omit<Toast, 'id' | 'count' | 'ts' | 'expires' | 'held'> | null = null
  switch (e.type) {
    case 'circuit_opened':
      t = {
        kind: 'circuit',
        title: 'Circuit opened',
        body: `${d.service ?? 'a service'} paused after ${d.failures ?? 'repeated'} failures; its calls are refused${
          d.cooldown_ms != null ? ` for ${Math.round(Number(d.cooldown_ms) / 1000)} s` : ''
        } and the agent's fallbacks serve them`,
        agentId,
      }
      break
    case 'pii_finding': {
      // The value itself never reaches the dashboard: type, place and what replaced it.
      const type = String(d.type ?? 'pii')
      const action = String(d.action ?? 'reported')
      const marker = typeof d.replacement === 'string' ? d.replacement : `[${type.toUpperCase()}_REDACTED]`
      t = {
        kind: 'pii',
        title: 'PII detected',
        body:
          action === 'redacted'
            ? `${type} in ${String(d.location ?? 'a call')} → ${marker}`
            : `${type} in ${String(d.location ?? 'a call')} (${action})`,
        agentId,
      }
      break
    }
    case 'budget_warning':
      t = {
        kind: 'budget',
        title: 'Budget warning',
        body: `${pct(Number(d.percent_used), Number(d.percent_used) < 1 ? 2 : 0)} of ${usd(Number(d.limit_usd))} spent (${usd(
          Number(d.spent_usd),
        )} / ${usd(Number(d.limit_usd))})`,
        agentId,
        limitUsd: typeof d.limit_usd === 'number' ? d.limit_usd : undefined,
        spentUsd: typeof d.spent_usd === 'number' ? d.spent_usd : undefined,
      }
      break
    case 'budget_exceeded':
      t = {
        kind: 'exceeded',
        title: 'Budget exceeded',
        body: `LLM calls are refused until the limit is raised (${usd(Number(d.committed_usd))} of ${usd(Number(d.limit_usd))} committed)`,
        agentId,
        limitUsd: typeof d.limit_usd === 'number' ? d.limit_usd : undefined,
        spentUsd: typeof d.committed_usd === 'number' ? d.committed_usd : undefined,
      }
      break
    case 'policy_failure':
      t = { kind: 'failure', title: `Policy ${String(e.policy)} failed`, body: String(e.message ?? ''), agentId }
      break
  }
  if (!t) return
  const now = Date.now()
  const same = live.toasts.find((x) => x.kind === t!.kind && x.agentId === agentId && x.title === t!.title && !x.done)
  if (same) {
    same.count += 1
    same.body = t.body
    same.ts = now
    same.expires = now + TOAST_LIFE_MS[t.kind]
    if (t.limitUsd !== undefined) same.limitUsd = t.limitUsd
    if (t.spentUsd !== undefined) same.spentUsd = t.spentUsd
    return
  }
  live.toasts.push({ ...t, id: ++toastSeq, count: 1, ts: now, expires: now + TOAST_LIFE_MS[t.kind], held: false })
  // The oldest that nobody is working on gives way.
  while (live.toasts.length > MAX_TOASTS) {
    const i = live.toasts.findIndex((x) => !x.held)
    live.toasts.splice(i < 0 ? 0 : i, 1)
  }
}

export function dismiss(id: number): void {
  const i = live.toasts.findIndex((t) => t.id === id)
  if (i >= 0) live.toasts.splice(i, 1)
}

/** Keep a notification while the operator is on it; its time starts again when they leave. */
export function hold(id: number, held: boolean): void {
  const t = live.toasts.find((x) => x.id === id)
  if (!t) return
  t.held = held
  if (!held) t.expires = Math.max(t.expires, Date.now() + 3000)
}

/** Show what a notification's action did, then let it go. */
export function settle(id: number, done: string): void {
  const t = live.toasts.find((x) => x.id === id)
  if (!t) return
  t.done = done
  t.held = false
  t.expires = Date.now() + 3000
}

function expireToasts(): void {
  const now = Date.now()
  for (let i = live.toasts.length - 1; i >= 0; i--) {
    const t = live.toasts[i]
    if (!t.held && t.expires <= now) live.toasts.splice(i, 1)
  }
}

/** Load the latest stored events (oldest first in the log). */
async function loadEvents(): Promise<void> {
  try {
    const stored = await api<IhEvent[]>('GET', '/events?limit=200')
    for (const e of stored.reverse()) addEvent(e, false)
    live.events.sort((a, b) => a.ts_ms - b.ts_ms || (a.seq ?? 0) - (b.seq ?? 0))
    const traces = await api<Trace[]>('GET', '/traces?limit=' + MAX_POINTS)
    if (live.latency.length === 0) {
      live.latency = traces
        .filter((t) => t.kind === 'llm')
        .reverse()
        .map((t) => ({ ts: t.ts_ms, ms: t.latency_ms, model: t.model ?? '', agent: t.agent_id }))
    }
  } catch (e) {
    live.loadError = (e as Error).message
  }
}

async function connect(): Promise<void> {
  if (stopped) return
  const mine = epoch
  const token = await accessToken()
  if (!token || stopped || mine !== epoch) return
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const ws = new WebSocket(`${scheme}://${location.host}/ws?access_token=${encodeURIComponent(token)}`)
  socket = ws
  ws.onopen = () => {
    if (socket !== ws) return
    live.conn = 'open'
    backoff = 500
    live.health = null
    live.runEnd = null
    // Whatever happened while the socket was down is in the store.
    void loadEvents()
    void refreshAll()
  }
  ws.onmessage = (m) => {
    if (socket !== ws) return
    let e: IhEvent
    try {
      e = JSON.parse(String(m.data))
    } catch {
      return
    }
    if (e.type === 'hello') return
    if (e.type === 'closing') {
      // The `ironhost start` serving this page ends with its run: its last word.
      const state = String(e.state ?? '')
      const id = String(e.agent_id ?? '')
      const entry = live.agents.find((a) => a.agent.id === id)
      const final = TERMINAL.includes(state)
      if (entry && final) {
        entry.agent.state = entry.metrics.state = state
        if (typeof e.exit_code === 'number') entry.agent.exit_code = e.exit_code
        ends.set(id, { agentId: id, state, exitCode: entry.agent.exit_code, ts: e.ts_ms })
      }
      if (!live.runEnd || live.runEnd.agentId !== id) {
        live.runEnd = {
          agentId: id,
          state: final ? state : entry?.agent.state ?? 'ended',
          exitCode: typeof e.exit_code === 'number' ? e.exit_code : null,
          ts: e.ts_ms,
        }
      }
      return
    }
    if (e.type === 'lagged') {
      void loadEvents()
      scheduleRefresh()
      return
    }
    addEvent(e, true)
    scheduleRefresh()
    window.clearTimeout(settleTimer)
    settleTimer = window.setTimeout(scheduleRefresh, SETTLE_MS)
  }
  ws.onclose = async (c) => {
    if (socket !== ws) return
    socket = null
    if (stopped) return
    if (c.code === 4401) {
      // The token expired (every 15 minutes) or the session ended: a refresh decides which.
      // Not a disconnection, so no banner; a logged-out session shows the login screen.
      live.conn = 'connecting'
      await refresh()
      if (!session.tokens || stopped) return
      if (tokenFresh()) {
        void connect()
        return
      }
    }
    if (live.conn !== 'closed') live.downSince = Date.now()
    live.conn = 'closed'
    const wait = backoff
    backoff = Math.min(backoff * 2, 5000)
    live.reconnectIn = Math.round(wait / 1000)
    reconnectTimer = window.setTimeout(() => void connect(), wait)
  }
}

/** Start streaming (after login). */
export function start(): void {
  if (!stopped) return
  stopped = false
  epoch++
  live.downSince = 0
  void refreshAll()
  void connect()
  pollTimer = window.setInterval(() => {
    policiesDue = true
    if (session.tokens && live.conn === 'open') void refreshAll()
  }, POLL_MS)
  toastTimer = window.setInterval(expireToasts, 250)
}

/** Stop streaming and forget what was shown (logout). */
export function stop(): void {
  stopped = true
  epoch++
  window.clearTimeout(reconnectTimer)
  window.clearInterval(pollTimer)
  window.clearInterval(toastTimer)
  window.clearTimeout(settleTimer)
  window.clearTimeout(refreshTimer)
  refreshTimer = undefined
  refreshing = false
  refreshAgain = false
  lastRefresh = 0
  policiesDue = true
  backoff = 500
  socket?.close()
  socket = null
  seen.clear()
  ends.clear()
  Object.assign(live, {
    conn: 'connecting',
    downSince: 0,
    agents: [],
    policies: null,
    agentUsage: null,
    protection: null,
    health: null,
    events: [],
    latency: [],
    toasts: [],
    selected: '',
    loadError: '',
    loaded: false,
    runEnd: null,
    logQuery: '',
    logShow: 'important',
  })
}
