// The shapes the control plane answers with (see /api/openapi.json).

export interface Progress {
  done: number
  total: number | null
  unit: string | null
  percent: number | null
}

export interface AgentMetrics {
  agent_id: string
  state: string
  budget_usd: number | null
  cost_usd: number
  llm_calls: number
  tool_calls: number
  input_tokens: number
  output_tokens: number
  denials: number
  errors: number
  fallbacks: number
  pii_findings: number
  success_rate: number | null
  throughput_per_min: number | null
  uptime_s: number | null
  latency_ms: { p50: number | null; p95: number | null; p99: number | null }
  progress: Progress | null
  /** Units of work (leads) the agent reported with `ironhost.unit_done`; null if none. */
  units?: UnitFigures | null
  /** Actions a policy refused as not permitted (tool calls, egress). */
  unauthorized?: number
  /** Prompt-injection attempts a policy reported. */
  injections?: number
  /** Share of the run with none of the agent's circuits open. */
  uptime_pct?: number | null
  circuit_open_s?: number
  /** The budget alerts' advice: `Approve $25 increase`, or that none is needed. */
  recommended_action?: string | null
  recommended_increase_usd?: number | null
}

export interface UnitFigures {
  unit: string | null
  done: number
  ok: number
  failed: number
  fallback: number
  success_rate: number
  fallback_rate: number
  per_hour: number | null
  seconds: { p50: number | null; p95: number | null; p99: number | null }
}

export interface AgentRecord {
  id: string
  name: string
  script: string
  state: string
  bundle: string
  environment: string
  budget_usd: number | null
  exit_code: number | null
  runs: number
  pid: number | null
  created_ms: number
  updated_ms: number
  progress: Progress | null
}

export interface AgentEntry {
  agent: AgentRecord
  metrics: AgentMetrics
}

export interface PolicyView {
  order: number
  name: string
  version: string
  wit_version: string
  description: string
  hooks: string[]
  capabilities: string[]
  failure_mode: string
  enabled: boolean
  status: string
  builtin: boolean
  calls: number
  denials: number
  failures: number
  mean_latency_us: number | null
  deadline_ms: number
  memory_mib: number
  sha256: string
}

export interface PolicyList {
  agent_id: string | null
  bundle: string
  generation: number
  policies: PolicyView[]
}

export interface UsageRow {
  key: string
  calls: number
  input_tokens: number
  output_tokens: number
  cost_usd: number
  mean_latency_ms: number | null
}

export interface Usage {
  totals: {
    calls: number
    llm_calls: number
    tool_calls: number
    input_tokens: number
    output_tokens: number
    cost_usd: number
  }
  by_model: UsageRow[]
  by_agent: UsageRow[]
}

/** A stored or streamed event: `type`, `ts_ms`, `agent_id`, `severity`, `seq`, and its fields. */
export interface IhEvent {
  type: string
  ts_ms: number
  agent_id?: string | null
  severity: string
  seq?: number
  id?: number
  detail?: Record<string, unknown>
  [field: string]: unknown
}

export interface Protection {
  pii: { pii_type: string; action: string; count: number }[]
  circuit_opened: IhEvent[]
  circuit_closed: IhEvent[]
}

export interface Limit {
  id: number
  agent_id: string | null
  limit_usd: number
  warn_at: number
}

export interface Health {
  status: string
  version: string
  wit: string
  uptime_s: number
  agent_id?: string | null
}

export interface Secret {
  name: string
  environment: string
  version: number
  created_ms: number
  updated_ms: number
  value: string
  masked: boolean
}

export interface Trace {
  id: string
  agent_id: string
  kind: string
  model: string | null
  tool: string | null
  outcome: string
  cost_usd: number
  latency_ms: number
  ts_ms: number
}
