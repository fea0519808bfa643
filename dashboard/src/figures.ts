// What the overview says about one agent, in the pilot's display formats: `🟢 Running`,
// `23 / 100 leads (23%)`, `100% (23/23)`, `$5.29 / $50.00`, `10.6% used`, `$0.23 avg/lead`,
// `Projection: $23.00 total ✅`, `212 leads/hour`, `P95: 2.1s`, `34%`. The headline strip and
// the panels take their text from here, so one figure reads the same everywhere.

import type { AgentEntry } from './types'
import { count, pct, perHour, secs, singular, usd } from './format'

export interface Figure {
  /** The figure as shown. */
  text: string
  /** What it is made of, for a tooltip or a second line. */
  detail?: string
}

export type Level = 'ok' | 'warn' | 'bad'
export const ICON: Record<Level, string> = { ok: '✅', warn: '⚠️', bad: '🔴' }

const TERMINAL = new Set(['completed', 'failed', 'stopped', 'lost'])

export function ended(state: string | undefined): boolean {
  return TERMINAL.has(state ?? '')
}

export function status(state: string): Figure {
  const icon: Record<string, string> = {
    running: '🟢',
    starting: '🟡',
    completed: '✅',
    failed: '🔴',
    stopped: '⏹️',
    lost: '⚪',
  }
  return { text: `${icon[state] ?? '⚪'} ${state ? state[0].toUpperCase() + state.slice(1) : 'Unknown'}` }
}

/** The plural unit the agent counts in (`leads`), or null. */
export function unitOf(e: AgentEntry): string | null {
  return e.metrics.progress?.unit ?? e.agent.progress?.unit ?? e.metrics.units?.unit ?? null
}

export function progress(e: AgentEntry): Figure | null {
  const p = e.metrics.progress ?? e.agent.progress
  if (!p) return null
  const unit = p.unit ? ' ' + p.unit : ''
  if (p.total === null || p.total === undefined) return { text: `${count(p.done)}${unit}` }
  const percent = p.total > 0 ? Math.round((p.done / p.total) * 100) : 0
  return { text: `${count(p.done)} / ${count(p.total)}${unit} (${percent}%)` }
}

/** Per unit of work when the agent reports units, else per call. */
export function success(e: AgentEntry): Figure {
  const u = e.metrics.units
  if (u && u.done > 0) {
    return {
      text: `${pct(u.success_rate * 100, 0)} (${count(u.ok)}/${count(u.done)})`,
      detail: `${count(u.failed)} failed${u.fallback ? `, ${count(u.fallback)} via fallback` : ''}`,
    }
  }
  const m = e.metrics
  const calls = m.llm_calls + m.tool_calls
  if (calls === 0 || m.success_rate == null) return { text: '—', detail: 'no call yet' }
  const ok = Math.round(m.success_rate * calls)
  return { text: `${pct(m.success_rate * 100, 0)} (${count(ok)}/${count(calls)} calls)`, detail: 'per call: the agent reports no units' }
}

export function spend(e: AgentEntry): Figure {
  const limit = e.metrics.budget_usd
  return { text: `${usd(e.metrics.cost_usd)} / ${limit == null ? 'no limit' : usd(limit)}` }
}

export function used(e: AgentEntry): Figure | null {
  const limit = e.metrics.budget_usd
  if (!limit) return null
  return { text: `${pct((e.metrics.cost_usd / limit) * 100, 1)} used` }
}

/** Units done so far: from the units the agent reported, else its progress. */
function unitsDone(e: AgentEntry): number {
  return e.metrics.units?.done || (e.metrics.progress ?? e.agent.progress)?.done || 0
}

export function perUnit(e: AgentEntry): Figure {
  const done = unitsDone(e)
  const unit = singular(unitOf(e))
  if (done > 0) return { text: `${usd(e.metrics.cost_usd / done)} avg/${unit}` }
  const calls = e.metrics.llm_calls
  return { text: calls > 0 ? `${usd(e.metrics.cost_usd / calls, 4)} avg/call` : '—' }
}

/** Spend at the end of the run, from the cost per unit so far; null without a total. */
export function projectedUsd(e: AgentEntry): number | null {
  const p = e.metrics.progress ?? e.agent.progress
  const done = p?.done ?? 0
  if (!p || !p.total || done <= 0) return null
  if (ended(e.agent.state)) return e.metrics.cost_usd
  return (e.metrics.cost_usd / done) * p.total
}

export function projection(e: AgentEntry): Figure & { level: Level | null } {
  const limit = e.metrics.budget_usd
  const spent = e.metrics.cost_usd
  const projected = projectedUsd(e)
  const text = projected == null ? 'Projection: —' : `Projection: ${usd(projected)} total`
  if (!limit) return { text, level: null, detail: 'no limit' }
  const basis = Math.max(projected ?? spent, spent)
  if (spent >= limit) return { text, level: 'bad', detail: 'limit reached' }
  if (basis > limit) return { text, level: 'bad', detail: `projected over the ${usd(limit)} limit` }
  if (basis >= 0.9 * limit || spent >= 0.8 * limit) return { text, level: 'warn', detail: 'approaching the limit' }
  return { text, level: 'ok', detail: 'under budget' }
}

export function throughput(e: AgentEntry): Figure {
  const u = e.metrics.units
  const unit = unitOf(e) ?? 'units'
  if (u && u.per_hour != null) return { text: perHour(u.per_hour, unit) }
  const p = e.metrics.progress ?? e.agent.progress
  const up = e.metrics.uptime_s
  if (p && p.done > 0 && up && up >= 1) return { text: perHour((p.done * 3600) / up, p.unit ?? 'units') }
  const perMin = e.metrics.throughput_per_min
  return { text: perMin == null || perMin === 0 ? '—' : perHour(perMin * 60, 'calls') }
}

/** P95 of a unit's time when the agent reports units with times, else of an LLM call. */
export function p95(e: AgentEntry): Figure {
  const s = e.metrics.units?.seconds?.p95
  if (s != null) return { text: `P95: ${secs(s)}`, detail: `per ${singular(unitOf(e))}` }
  const ms = e.metrics.llm_calls > 0 ? e.metrics.latency_ms.p95 : null
  return { text: ms == null ? 'P95: —' : `P95: ${secs(ms / 1000)}`, detail: 'per LLM call' }
}

/** Units served by a fallback (a cache, an export): `34%`. */
export function cacheHits(e: AgentEntry): Figure {
  const u = e.metrics.units
  if (u && u.done > 0) {
    return { text: pct(u.fallback_rate * 100, 0), detail: `${count(u.fallback)} of ${count(u.done)} ${unitOf(e) ?? 'units'}` }
  }
  const calls = e.metrics.llm_calls + e.metrics.tool_calls
  if (calls === 0) return { text: '—' }
  return { text: pct((e.metrics.fallbacks / calls) * 100, 0), detail: `${count(e.metrics.fallbacks)} of ${count(calls)} calls` }
}

export function uptime(e: AgentEntry): Figure {
  const v = e.metrics.uptime_pct
  if (v == null) return { text: '—' }
  const open = e.metrics.circuit_open_s ?? 0
  return { text: pct(v, v >= 99.95 || v === 0 ? 0 : 1), detail: open > 0 ? `a circuit was open for ${secs(open)}` : 'no circuit opened' }
}
