// The live state of the dashboard: what the REST API last said, the WebSocket's event stream,
// and notifications. Every event schedules a refresh of the figures (coalesced, at most one in
// flight), so a change shows within a second; a slow poll covers anything the stream missed.

import { reactive } from 'vue'
import { accessToken, api, refresh, session, tokenFresh } from './api'
import { pct, usd } from './format'
import type { AgentEntry, Health, IhEvent, PolicyList, Protection, Trace, Usage } from './types'

/** Events kept in the log. */
const MAX_EVENTS = 500
/** Latency points kept for the chart. */
const MAX_POINTS = 120
/** A refresh runs at most this long after the event that asked for it. */
const REFRESH_DELAY_MS = 150
/** And once more this long after the last event: the process that streams an event may write
 * it to the store a moment later (its recorder batches every 50 ms). */
const SETTLE_MS = 600
/** Without events, figures are refreshed this often anyway. */
const POLL_MS = 5000

export type Conn = 'connecting' | 'open' | 'closed'

export interface Toast {
  id: number
  kind: 'circuit' | 'pii' | 'budget' | 'exceeded' | 'failure'
  title: string
  body: string
  count: number
  agentId: string | null
  ts: number
  /** Budget warnings: the limit the agent ran under. */
  limitUsd?: number
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
  const mine = epoch
  const writes = policyWrites
  try {
    const [agents, policies, protection, health] = await Promise.all([
      api<AgentEntry[]>('GET', '/agents'),
      api<PolicyList>('GET', '/policies'),
      api<Protection>('GET', '/protection'),
      api<Health>('GET', '/health'),
    ])
    const id = selectedId(agents)
    const agentUsage = id ? await api<Usage>('GET', `/usage/by-agent/${encodeURIComponent(id)}`) : null
    if (mine !== epoch) return
    Object.assign(live, { agents, agentUsage, protection, health, loadError: '', loaded: true })
    if (writes === policyWrites) live.policies = policies
  } catch (e) {
    if (mine === epoch) live.loadError = (e as Error).message
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
  refreshTimer = window.setTimeout(() => {
    refreshTimer = undefined
    void refreshAll()
  }, REFRESH_DELAY_MS)
}

function addEvent(e: IhEvent, notify: boolean): void {
  const key = eventKey(e)
  if (seen.has(key)) return
  seen.add(key)
  live.events.push(e)
  if (live.events.length > MAX_EVENTS) {
    for (const old of live.events.splice(0, live.events.length - MAX_EVENTS)) seen.delete(eventKey(old))
  }
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
  let t: Omit<Toast, 'id' | 'count' | 'ts'> | null = null
  switch (e.type) {
    case 'circuit_opened':
      t = {
        kind: 'circuit',
        title: 'Circuit opened',
        body: `${d.service ?? 'a service'} paused after ${d.failures ?? 'repeated'} failures; fallbacks serve its calls`,
        agentId,
      }
      break
    case 'pii_finding':
      // The value itself never reaches the dashboard: type, place and action only.
      t = {
        kind: 'pii',
        title: 'PII detected',
        body: `${String(d.type ?? 'personal data')} in ${String(d.location ?? 'a call')} → [${String(
          d.type ?? 'pii',
        ).toUpperCase()}] (${String(d.action ?? 'reported')})`,
        agentId,
      }
      break
    case 'budget_warning':
      t = {
        kind: 'budget',
        title: 'Budget warning',
        body: `${pct(Number(d.percent_used), Number(d.percent_used) < 1 ? 2 : 0)} of ${usd(Number(d.limit_usd))} spent (${usd(
          Number(d.spent_usd),
        )})`,
        agentId,
        limitUsd: typeof d.limit_usd === 'number' ? d.limit_usd : undefined,
      }
      break
    case 'budget_exceeded':
      t = { kind: 'exceeded', title: 'Budget exceeded', body: 'LLM calls are refused until the limit is raised', agentId }
      break
    case 'policy_failure':
      t = { kind: 'failure', title: `Policy ${String(e.policy)} failed`, body: String(e.message ?? ''), agentId }
      break
  }
  if (!t) return
  const same = live.toasts.find((x) => x.kind === t!.kind && x.agentId === agentId && x.title === t!.title)
  if (same) {
    same.count += 1
    same.body = t.body
    same.ts = Date.now()
    if (t.limitUsd !== undefined) same.limitUsd = t.limitUsd
    return
  }
  live.toasts.push({ ...t, id: ++toastSeq, count: 1, ts: Date.now() })
  if (live.toasts.length > 5) live.toasts.splice(0, live.toasts.length - 5)
}

export function dismiss(id: number): void {
  const i = live.toasts.findIndex((t) => t.id === id)
  if (i >= 0) live.toasts.splice(i, 1)
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
    if (session.tokens) void refreshAll()
  }, POLL_MS)
}

/** Stop streaming and forget what was shown (logout). */
export function stop(): void {
  stopped = true
  epoch++
  window.clearTimeout(reconnectTimer)
  window.clearInterval(pollTimer)
  window.clearTimeout(settleTimer)
  window.clearTimeout(refreshTimer)
  refreshTimer = undefined
  refreshing = false
  refreshAgain = false
  backoff = 500
  socket?.close()
  socket = null
  seen.clear()
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
  })
}
