// The REST client: the session's tokens (kept in sessionStorage for the tab's life), requests
// with the access token, one refresh on expiry, and the API's error body turned into a message.

import { reactive } from 'vue'

export type Role = 'admin' | 'viewer' | 'agent'

interface Tokens {
  access: string
  refresh: string
  /** When the access token expires (ms since the epoch). */
  expires: number
  username: string
  role: Role
}

const KEY = 'ironhost.session'

function load(): Tokens | null {
  try {
    const raw = sessionStorage.getItem(KEY)
    return raw ? (JSON.parse(raw) as Tokens) : null
  } catch {
    return null
  }
}

/** Who is logged in; `null` shows the login screen. */
export const session = reactive<{ tokens: Tokens | null }>({ tokens: load() })

function save(t: Tokens | null) {
  session.tokens = t
  if (t) sessionStorage.setItem(KEY, JSON.stringify(t))
  else sessionStorage.removeItem(KEY)
}

/** An error the API answered with (`{"error":{"code","message"}}`), or a network failure. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message)
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = 'http_' + res.status
  let message = `${res.status} ${res.statusText}`
  try {
    const body = await res.json()
    if (body?.error?.message) {
      message = body.error.message
      code = body.error.code ?? code
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(message, res.status, code)
}

interface LoginAnswer {
  access_token: string
  refresh_token: string
  expires_in: number
  username: string
  role: Role
}

function tokensOf(a: LoginAnswer, refresh?: string): Tokens {
  return {
    access: a.access_token,
    refresh: a.refresh_token ?? refresh,
    expires: Date.now() + a.expires_in * 1000,
    username: a.username,
    role: a.role,
  }
}

export async function login(username: string, password: string): Promise<void> {
  const res = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  })
  if (!res.ok) throw await errorOf(res)
  const answer: LoginAnswer = await res.json()
  if (answer.role === 'agent') {
    // Agent accounts read secrets in full: they are for agents and scripts, not for a browser.
    await fetch('/api/auth/logout', { method: 'POST', headers: { authorization: `Bearer ${answer.access_token}` } })
    throw new ApiError(
      `${answer.username} has the agent role, which is for agents and scripts: sign in as an admin or a viewer`,
      403,
      'forbidden',
    )
  }
  save(tokensOf(answer))
}

let refreshing: Promise<boolean> | null = null

/** Get a new access token with the refresh token; false (and logged out) when the session is over. */
export function refresh(): Promise<boolean> {
  const t = session.tokens
  if (!t) return Promise.resolve(false)
  refreshing ??= (async () => {
    try {
      const res = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: t.refresh }),
      })
      // Logged out (or in again) meanwhile: this answer belongs to a session that is gone.
      if (session.tokens?.refresh !== t.refresh) return false
      if (res.status === 401 || res.status === 403) {
        save(null)
        return false
      }
      if (!res.ok) return false
      const a = await res.json()
      if (session.tokens?.refresh !== t.refresh) return false
      save({ ...tokensOf({ ...a, username: a.username ?? t.username, role: a.role ?? t.role }, t.refresh) })
      return true
    } catch {
      return false
    } finally {
      refreshing = null
    }
  })()
  return refreshing
}

/** Whether there is an access token with more than a minute to live. */
export function tokenFresh(): boolean {
  const t = session.tokens
  return !!t && t.expires - Date.now() > 60_000
}

/** The access token, refreshed first when it is about to expire. */
export async function accessToken(): Promise<string | null> {
  if (!session.tokens) return null
  if (!tokenFresh()) await refresh()
  return session.tokens?.access ?? null
}

/** End the session on the server (revoking its tokens) and here. */
export async function logout(): Promise<void> {
  // A fresh access token, so that an expired one does not leave the server's session alive.
  const token = await accessToken().catch(() => null)
  save(null)
  if (token) {
    await fetch('/api/auth/logout', { method: 'POST', headers: { authorization: `Bearer ${token}` } }).catch(
      () => undefined,
    )
  }
}

/** A request that has not answered in this long is abandoned. */
const TIMEOUT_MS = 10_000

/** A request to `/api{path}`; JSON in and out. Throws [`ApiError`]. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const token = await accessToken()
    const headers: Record<string, string> = {}
    if (token) headers.authorization = `Bearer ${token}`
    let payload: BodyInit | undefined
    if (body instanceof FormData) payload = body
    else if (body !== undefined) {
      headers['content-type'] = 'application/json'
      payload = JSON.stringify(body)
    }
    let res: Response
    try {
      res = await fetch('/api' + path, { method, headers, body: payload, signal: AbortSignal.timeout(TIMEOUT_MS) })
    } catch (e) {
      const timedOut = (e as Error).name === 'TimeoutError'
      throw new ApiError(
        timedOut ? `${method} /api${path}: no answer within ${TIMEOUT_MS / 1000} s` : 'the control plane cannot be reached',
        0,
        timedOut ? 'timeout' : 'network',
      )
    }
    if (res.status === 401 && attempt === 0 && session.tokens && (await refresh())) continue
    if (res.status === 401) save(null)
    if (!res.ok) throw await errorOf(res)
    if (res.status === 204) return undefined as T
    const text = await res.text()
    return (text ? JSON.parse(text) : undefined) as T
  }
}
