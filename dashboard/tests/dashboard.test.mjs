// The dashboard in headless Chromium against a real `ironhost start` (an agent on the built-in
// simulator, driven command by command) and a real `ironhost serve`. Screenshots of the main
// views are written to docs/screenshots/ for the README.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import zlib from 'node:zlib'
import { after, before, describe, test } from 'node:test'
import { ADMIN_PASSWORD, Host, api, browser, bundleOrder, freePort, loaded, loggedIn, repo, shot, token } from './harness.mjs'

const EMAIL = 'jane.roe@example.org'

describe('dashboard on `ironhost start` with an agent on the simulator', () => {
  let host, b, page, admin

  before(async () => {
    host = await new Host({ mode: 'start', budget: 5 }).start()
    b = await browser()
    admin = await token(host)
    page = await loggedIn(b, host)
  })

  after(async () => {
    await b?.close()
    await host?.stop()
  })

  /** Milliseconds from the event's own timestamp to now, in the page's clock (same machine). */
  const ageOf = (locator) => locator.evaluate((el) => Date.now() - Number(el.getAttribute('data-ts')))

  test('login: a wrong password is refused with the reason; the right one opens the dashboard', async () => {
    const context = await b.newContext({ viewport: { width: 1440, height: 900 } })
    const p = await context.newPage()
    await p.goto(host.url + '/')
    await p.getByTestId('login-username').fill('admin')
    await p.getByTestId('login-password').fill('not-the-password')
    await shot(p, 'login')
    await p.getByTestId('login-submit').click()
    const error = p.getByTestId('login-error')
    await error.waitFor()
    const refused = await fetch(host.url + '/api/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'not-the-password' }),
    }).then((r) => r.json())
    assert.equal((await error.textContent()).trim(), refused.error.message)
    await p.getByTestId('login-password').fill(ADMIN_PASSWORD)
    await p.getByTestId('login-submit').click()
    await p.getByTestId('user-name').waitFor()
    assert.match(await p.getByTestId('user-name').textContent(), /admin\s+admin/)
    // The session survives a reload (the token is kept for the tab's session).
    await p.reload()
    await p.getByTestId('user-name').waitFor()
    // Logging out ends the session on the server too: its refresh token is refused after.
    const kept = JSON.parse(await p.evaluate(() => sessionStorage.getItem('ironhost.session')))
    await p.getByTestId('logout').click()
    await p.getByTestId('login-submit').waitFor()
    assert.equal(await p.evaluate(() => sessionStorage.getItem('ironhost.session')), null)
    let status
    for (let i = 0; i < 50 && status !== 401; i++) {
      status = (
        await fetch(host.url + '/api/auth/refresh', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ refresh_token: kept.refresh }),
        })
      ).status
      if (status !== 401) await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(status, 401, 'the refresh token still works after logout')
    // Agent accounts (which read secrets in full) are for agents, not for the dashboard.
    await api(host, 'POST', '/users', { username: 'crawler', password: 'agent-password', role: 'agent' }, admin)
    await p.getByTestId('login-username').fill('crawler')
    await p.getByTestId('login-password').fill('agent-password')
    await p.getByTestId('login-submit').click()
    await p.getByTestId('login-error').filter({ hasText: 'agent role' }).waitFor()
    assert.equal(await p.getByTestId('user-name').count(), 0)
    await context.close()
  })

  test('live metrics: status and progress follow the agent within 1 s', async () => {
    await page.goto(host.url + '/#/overview')
    await page.getByTestId('agent-status').filter({ hasText: 'Running' }).waitFor()
    await host.agent({ do: 'progress', done: 23, total: 100 })
    await page.getByTestId('agent-progress').filter({ hasText: '23 / 100 leads (23%)' }).waitFor({ timeout: 1000 })
    await page.getByTestId('event-show').selectOption('all')
    const row = page.locator('[data-testid="event-row"][data-type="agent_progress"]').filter({ hasText: '23 / 100' }).first()
    await row.waitFor({ timeout: 1000 })
    assert.ok((await ageOf(row)) < 1000)
  })

  test('an event appears in the event log within 1 s, coloured by severity, expandable', async () => {
    // A call that went fine is routine: under "All", not under the default "Important".
    await page.getByTestId('event-show').selectOption('all')
    const answer = await host.agent({ do: 'tool', company: 'Northwind Robotics' })
    assert.equal(answer.result.company, 'Northwind Robotics')
    const row = page.locator('[data-testid="event-row"][data-type="tool_call"]').first()
    await row.waitFor({ timeout: 1000 })
    const age = await ageOf(row)
    assert.ok(age < 1000, `the event showed ${age} ms after it happened`)
    assert.match(await row.textContent(), /^\s*\[\d\d:\d\d:\d\d\]\s*INFO\s*tool_call/)
    assert.equal(await row.getAttribute('data-level'), 'INFO')
    assert.match(await row.locator('span').nth(1).getAttribute('class'), /text-sky-400/)
    await row.click()
    const full = JSON.parse(await row.getByTestId('event-detail').textContent())
    assert.equal(full.type, 'tool_call')
    assert.equal(full.tool, 'crm_lookup')
    assert.equal(full.agent_id, host.agentId)
    await page.getByTestId('event-show').selectOption('important')
    await page.locator('[data-testid="event-row"][data-type="tool_call"]').first().waitFor({ state: 'detached' })
  })

  test('a PII finding increments the protection counter and raises a notification', async () => {
    await page.goto(host.url + '/#/overview')
    await loaded(page)
    const counter = page.getByTestId('pii-total')
    const before = Number((await counter.textContent()).replace(/,/g, ''))
    const answer = await host.agent({ do: 'echo', text: `Draft a note to ${EMAIL} about the pilot.` })
    assert.ok(!answer.result.includes(EMAIL), `the provider received the address: ${answer.result}`)
    const toast = page.locator('[data-testid="toast"][data-kind="pii"]')
    await toast.waitFor({ timeout: 1000 })
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="pii-total"]').textContent.replace(/,/g, '')) > n,
      before,
      { timeout: 1000 },
    )
    const body = await toast.getByTestId('toast-body').textContent()
    // The marker the provider's copy of the text holds in the value's place.
    assert.match(body, /email in \S+ → \[EMAIL_REDACTED\]/)
    assert.ok(!body.includes(EMAIL) && !body.includes('jane.roe'), `the notification shows the value: ${body}`)
    assert.ok(!(await page.content()).includes(EMAIL), 'the address appears somewhere in the page')
    await host.agent({ do: 'chat', text: 'Summarise the pilot in one line.' })
    await page.waitForFunction(() => !['$0.00', '—'].includes(document.querySelector('[data-testid="cost-spent"]').textContent))
    await toast.getByTestId('toast-dismiss').click()
    await toast.waitFor({ state: 'detached' })
  })

  test('the policies panel lists the default bundle in order, with its figures', async () => {
    await page.goto(host.url + '/#/policies')
    const rows = page.getByTestId('policy-row')
    await rows.first().waitFor()
    const expected = bundleOrder('default')
    assert.deepEqual(expected, ['secrets-inject', 'circuit-breaker', 'budget', 'prompt-guard', 'pii-redact'])
    assert.deepEqual(await rows.evaluateAll((rs) => rs.map((r) => r.dataset.name)), expected)
    const listed = (await api(host, 'GET', '/policies', undefined, admin)).policies
    for (const p of listed) {
      const row = page.locator(`[data-testid="policy-row"][data-name="${p.name}"]`)
      const text = await row.textContent()
      for (const want of [p.version, p.wit_version, p.failure_mode, ...p.capabilities]) assert.ok(text.includes(want), `${p.name} row lacks ${want}`)
      assert.equal((await row.getByTestId('policy-status').textContent()).trim(), 'active')
    }
    assert.equal(await page.getByTestId('policies-bundle').textContent(), 'default')
    await shot(page, 'policies')
  })

  test('disabling a policy through the UI changes the next call\'s outcome', async () => {
    await page.goto(host.url + '/#/policies')
    const row = page.locator('[data-testid="policy-row"][data-name="pii-redact"]')
    await row.waitFor()
    const redacted = await host.agent({ do: 'echo', text: `Reply to ${EMAIL}` })
    assert.ok(!redacted.result.includes(EMAIL))

    await row.getByTestId('policy-toggle').click()
    await page.locator('[data-testid="policy-row"][data-name="pii-redact"][data-enabled="false"]').waitFor()
    assert.equal((await row.getByTestId('policy-status').textContent()).trim(), 'disabled')
    const passed = await host.agent({ do: 'echo', text: `Reply to ${EMAIL}` })
    assert.ok(passed.result.includes(EMAIL), `with pii-redact disabled the call still changed: ${passed.result}`)

    await row.getByTestId('policy-toggle').click()
    await page.locator('[data-testid="policy-row"][data-name="pii-redact"][data-enabled="true"]').waitFor()
    const again = await host.agent({ do: 'echo', text: `Reply to ${EMAIL}` })
    assert.ok(!again.result.includes(EMAIL))
  })

  test('reordering with the buttons changes the chain the host runs', async () => {
    await page.goto(host.url + '/#/policies')
    const names = () => page.getByTestId('policy-row').evaluateAll((rs) => rs.map((r) => r.dataset.name))
    const start = await names()
    const answered = () => page.waitForResponse((r) => r.url().endsWith('/api/policies/order') && r.ok())
    let put = answered()
    await page.locator('[data-testid="policy-row"][data-name="budget"]').getByTestId('policy-down').click()
    await put
    const moved = [...start]
    const i = moved.indexOf('budget')
    ;[moved[i], moved[i + 1]] = [moved[i + 1], moved[i]]
    await page.waitForFunction((want) => [...document.querySelectorAll('[data-testid="policy-row"]')].map((r) => r.dataset.name).join() === want, moved.join())
    assert.deepEqual((await api(host, 'GET', '/policies', undefined, admin)).policies.map((p) => p.name), moved)
    put = answered()
    await page.locator('[data-testid="policy-row"][data-name="budget"]').getByTestId('policy-up').click()
    await put
    await page.waitForFunction((want) => [...document.querySelectorAll('[data-testid="policy-row"]')].map((r) => r.dataset.name).join() === want, start.join())
    assert.deepEqual((await api(host, 'GET', '/policies', undefined, admin)).policies.map((p) => p.name), start)
  })

  test('uploading a component adds it to the chain; a bad one shows the admission error verbatim', async () => {
    await page.goto(host.url + '/#/policies')
    const junk = path.join(host.home, 'not-a-policy.wasm')
    fs.writeFileSync(junk, 'this is not a WebAssembly component')
    await page.getByTestId('policy-upload-file').setInputFiles(junk)
    await page.getByTestId('policy-upload-submit').click()
    const error = page.getByTestId('policy-upload-error')
    await error.waitFor()
    const form = new FormData()
    form.append('component', new Blob([fs.readFileSync(junk)]), 'not-a-policy.wasm')
    const direct = await fetch(host.url + '/api/policies', { method: 'POST', headers: { authorization: `Bearer ${admin}` }, body: form })
    assert.equal(direct.status, 422)
    assert.equal(await error.textContent(), (await direct.json()).error.message)

    const component = path.join(repo, 'target', 'wasm', 'wasm32-wasip2', 'policy', 'fixture_allow_all.wasm')
    assert.ok(fs.existsSync(component), `${component} is built by the cargo tests (tests/fixtures)`)
    await page.getByTestId('policy-upload-file').setInputFiles(component)
    await page.getByTestId('policy-upload-submit').click()
    await page.getByTestId('policy-upload-ok').waitFor()
    const names = await page.getByTestId('policy-row').evaluateAll((rs) => rs.map((r) => r.dataset.name))
    const chain = bundleOrder('default')
    assert.equal(names.length, chain.length + 1)
    assert.deepEqual(names.slice(0, chain.length), chain)
    const added = (await api(host, 'GET', '/policies', undefined, admin)).policies[chain.length]
    assert.equal(names[chain.length], added.name)
    // It runs on the next call.
    await host.agent({ do: 'chat', text: 'One more line.' })
    await page.waitForFunction(
      (n) => Number(document.querySelector(`[data-testid="policy-row"][data-name="${n}"] [data-testid="policy-calls"]`).textContent) > 0,
      added.name,
    )
    await page.locator(`[data-testid="policy-row"][data-name="${added.name}"]`).getByTestId('policy-toggle').click()
    await page.locator(`[data-testid="policy-row"][data-name="${added.name}"][data-enabled="false"]`).waitFor()
  })

  test('a circuit opening raises a notification and shows in protection', async () => {
    await page.goto(host.url + '/#/overview')
    await host.agent({ do: 'tool', company: 'Contoso' })
    for (let i = 0; i < 5; i++) {
      const r = await host.agent({ do: 'tool', company: 'Contoso', fail: true })
      assert.ok(r.error, `a failing call succeeded: ${JSON.stringify(r)}`)
    }
    const toast = page.locator('[data-testid="toast"][data-kind="circuit"]')
    await toast.waitFor({ timeout: 1000 })
    assert.match(await toast.textContent(), /crm_lookup/)
    await page.locator('[data-testid="circuit"][data-open="true"]').filter({ hasText: 'crm_lookup' }).waitFor()
    // In the log at least as a warning: the host's severity high is ERROR (red), medium WARN (yellow).
    const row = page.locator('[data-testid="event-row"][data-type="circuit_opened"]').first()
    await row.click()
    const { severity } = JSON.parse(await row.getByTestId('event-detail').textContent())
    const level = { high: 'ERROR', critical: 'ERROR' }[severity] ?? 'WARN'
    assert.equal(await row.getAttribute('data-level'), level)
    assert.match(await row.locator('span').nth(1).getAttribute('class'), level === 'ERROR' ? /text-rose-400/ : /text-amber-300/)
    await toast.getByTestId('toast-dismiss').click()
  })

  test('a budget warning proposes an increase, and approving it raises the limit', async () => {
    await page.goto(host.url + '/#/overview')
    // 1 of 100,000 leads done: the projection passes any small limit, so an increase is proposed.
    await host.agent({ do: 'progress', done: 1, total: 100_000 })
    const [entry] = (await api(host, 'GET', '/agents', undefined, admin)).filter((a) => a.agent.id === host.agentId)
    // A $1 limit whose warning threshold sits just above what is spent: the next call crosses it.
    const warnAt = Math.min(1, entry.metrics.cost_usd / 1.0 + 1e-7)
    await api(host, 'POST', '/limits', { agent_id: host.agentId, limit_usd: 1.0, warn_at: warnAt }, admin)
    await host.agent({ do: 'chat', text: 'Write a short pitch for the pilot.' })
    const toast = page.locator('[data-testid="toast"][data-kind="budget"]')
    await toast.waitFor({ timeout: 1000 })
    assert.match(await toast.getByTestId('toast-body').textContent(), /of \$1\.00 spent \(\$[\d.]+ \/ \$1\.00\)/)
    const approve = toast.getByTestId('approve-increase')
    const label = (await approve.textContent()).trim()
    await shot(page, 'notifications')
    const m = /^Approve \$([\d,]+) increase$/.exec(label)
    assert.ok(m, `the action reads ${label}`)
    const increase = Number(m[1].replace(/,/g, ''))
    // The projection is far over the limit: the shortfall and a tenth, in whole dollars, as
    // the host advises (the rule its budget e-mails follow).
    assert.ok(increase > 1 && Number.isInteger(increase), label)
    const [advised] = (await api(host, 'GET', '/agents', undefined, admin)).filter((a) => a.agent.id === host.agentId)
    assert.equal(increase, advised.metrics.recommended_increase_usd)
    assert.equal(advised.metrics.recommended_action, label)
    await approve.click()
    await toast.getByTestId('toast-done').filter({ hasText: `Limit set to $${(1 + increase).toFixed(2)}` }).waitFor()
    const limits = await api(host, 'GET', '/limits', undefined, admin)
    assert.deepEqual(
      limits.filter((l) => l.agent_id === host.agentId).map((l) => l.limit_usd),
      [1 + increase],
    )
    await page.getByTestId('cost-limit').filter({ hasText: `$${(1 + increase).toFixed(2)}` }).waitFor()
    // The confirmation goes by itself.
    await toast.waitFor({ state: 'detached', timeout: 6000 })
  })

  test('another amount can be set from the notification with the keyboard alone', async () => {
    await page.goto(host.url + '/#/overview')
    const [own] = (await api(host, 'GET', '/limits', undefined, admin)).filter((l) => l.agent_id === host.agentId)
    const [entry] = (await api(host, 'GET', '/agents', undefined, admin)).filter((a) => a.agent.id === host.agentId)
    await api(host, 'PUT', `/limits/${own.id}`, { limit_usd: own.limit_usd, warn_at: entry.metrics.cost_usd / own.limit_usd + 1e-9 }, admin)
    await host.agent({ do: 'chat', text: 'And one more pitch.' })
    const toast = page.locator('[data-testid="toast"][data-kind="budget"]')
    await toast.waitFor({ timeout: 1000 })
    await toast.getByTestId('raise-limit').focus()
    await page.keyboard.press('Enter')
    const input = toast.getByTestId('raise-limit-input')
    await input.waitFor()
    await input.focus()
    await page.keyboard.press('ControlOrMeta+a')
    await page.keyboard.type('9999.50')
    await page.keyboard.press('Enter')
    await toast.getByTestId('toast-done').filter({ hasText: 'Limit set to $9999.50' }).waitFor()
    const limits = await api(host, 'GET', '/limits', undefined, admin)
    assert.deepEqual(limits.filter((l) => l.agent_id === host.agentId).map((l) => l.limit_usd), [9999.5])
  })

  test('secrets: an admin adds, reveals and deletes; a viewer cannot reveal or edit', async () => {
    const value = 'crm-key-8f3a9c2e71d04b55'
    await api(host, 'PUT', '/secrets/CRM_API_KEY', { value }, admin)
    await api(host, 'POST', '/users', { username: 'olivia', password: 'viewer-password', role: 'viewer' }, admin)

    await page.goto(host.url + '/#/secrets')
    const row = page.locator('[data-testid="secret-row"][data-name="CRM_API_KEY"]')
    await row.waitFor()
    const masked = (await row.getByTestId('secret-value').textContent()).trim()
    assert.equal(masked, (await api(host, 'GET', '/secrets/CRM_API_KEY', undefined, admin)).value)
    assert.match(masked, /^crm-key-8f\.\.\.55$/)
    await shot(page, 'secrets')
    await row.getByTestId('secret-reveal').click()
    await row.getByTestId('secret-value').filter({ hasText: value }).waitFor()

    // Add through the modal, then delete with a confirmation.
    await page.getByTestId('secret-add').click()
    await page.getByTestId('secret-form-name').fill('WEBHOOK_TOKEN')
    await page.getByTestId('secret-form-value').fill('whk-0c9d8e7f6a5b4c3d')
    await page.getByTestId('secret-form-save').click()
    const added = page.locator('[data-testid="secret-row"][data-name="WEBHOOK_TOKEN"]')
    await added.waitFor()
    assert.equal((await api(host, 'GET', '/secrets/WEBHOOK_TOKEN', undefined, admin)).version, 1)
    await added.getByTestId('secret-delete').click()
    await page.getByTestId('secret-delete-confirm').click()
    await added.waitFor({ state: 'detached' })
    await assert.rejects(api(host, 'GET', '/secrets/WEBHOOK_TOKEN', undefined, admin), /404/)

    const viewer = await loggedIn(b, host, 'olivia', 'viewer-password')
    await viewer.goto(host.url + '/#/secrets')
    const vrow = viewer.locator('[data-testid="secret-row"][data-name="CRM_API_KEY"]')
    await vrow.waitFor()
    assert.equal((await vrow.getByTestId('secret-value').textContent()).trim(), masked)
    for (const id of ['secret-reveal', 'secret-edit', 'secret-delete', 'secret-add']) {
      assert.equal(await viewer.getByTestId(id).count(), 0, `a viewer sees ${id}`)
    }
    assert.ok(!(await viewer.content()).includes(value))
    // Nor the policy controls.
    await viewer.goto(host.url + '/#/policies')
    await viewer.getByTestId('policy-row').first().waitFor()
    assert.equal(await viewer.getByTestId('policy-toggle').count(), 0)
    assert.equal(await viewer.getByTestId('policy-upload').count(), 0)
    await viewer.context().close()
  })
})

describe('dashboard on `ironhost serve` with no agent', () => {
  let host, b, page, port, home

  before(async () => {
    port = await freePort()
    host = await new Host({ mode: 'serve', port }).start()
    home = host.home
    b = await browser()
    page = await loggedIn(b, host)
  })

  after(async () => {
    await b?.close()
    await host?.stop()
  })

  test('shows empty states, not errors', async () => {
    await page.goto(host.url + '/#/overview')
    await loaded(page)
    await page.getByTestId('metrics-empty').waitFor()
    await page.getByTestId('events-empty').waitFor()
    assert.equal(await page.getByRole('alert').count(), 0)
    assert.equal(await page.getByTestId('pii-total').textContent(), '0')
    await page.goto(host.url + '/#/secrets')
    await page.getByTestId('secrets-empty').waitFor()
    await page.goto(host.url + '/#/policies')
    await page.getByTestId('policy-row').first().waitFor()
    assert.equal(await page.getByRole('alert').count(), 0)
  })

  test('assets are served compressed to a browser that accepts it, as they are to one that does not', async () => {
    const get = (p, encoding) =>
      new Promise((resolve, reject) => {
        const headers = encoding ? { 'accept-encoding': encoding } : {}
        http
          .get(host.url + p, { headers }, (res) => {
            const chunks = []
            res.on('data', (c) => chunks.push(c))
            res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }))
          })
          .on('error', reject)
      })
    const index = (await get('/')).body.toString()
    const assets = [...index.matchAll(/(\/assets\/[^"]+\.(?:js|css))/g)].map((m) => m[1])
    assert.ok(assets.length >= 2, `no script or style in ${index}`)
    for (const asset of ['/', ...assets]) {
      const plain = await get(asset)
      assert.equal(plain.headers['content-encoding'], undefined)
      const br = await get(asset, 'gzip, deflate, br')
      assert.equal(br.headers['content-encoding'], 'br', asset)
      assert.match(br.headers.vary, /(^|, )accept-encoding(,|$)/)
      assert.ok(br.body.length < plain.body.length / 2 || plain.body.length < 1024, `${asset}: ${br.body.length} of ${plain.body.length} bytes`)
      assert.ok(zlib.brotliDecompressSync(br.body).equals(plain.body), `${asset}: the Brotli copy differs`)
      const gz = await get(asset, 'gzip')
      assert.equal(gz.headers['content-encoding'], 'gzip', asset)
      assert.ok(zlib.gunzipSync(gz.body).equals(plain.body), `${asset}: the gzip copy differs`)
      assert.equal(plain.headers['content-type'], br.headers['content-type'])
    }
  })

  test('a restarted server is reconnected to; a clear banner shows while it is down', async () => {
    await page.goto(host.url + '/#/overview')
    await page.locator('[data-testid="conn-state"][data-state="open"]').waitFor()
    assert.equal(await page.getByTestId('conn-banner').count(), 0)
    await host.stop()
    const banner = page.getByTestId('conn-banner')
    await banner.waitFor({ timeout: 5000 })
    assert.match(await banner.textContent(), /Disconnected from the control plane/)
    await shot(page, 'disconnected')

    host = await new Host({ mode: 'serve', port, home }).start()
    await page.locator('[data-testid="conn-state"][data-state="open"]').waitFor({ timeout: 15_000 })
    await banner.waitFor({ state: 'detached' })
    // Still logged in (the session outlives the restart), and the API answers.
    const t = await token(host)
    await api(host, 'PUT', '/secrets/AFTER_RESTART', { value: 'restart-value-1234' }, t)
    await page.goto(host.url + '/#/secrets')
    await page.locator('[data-testid="secret-row"][data-name="AFTER_RESTART"]').waitFor()
    assert.equal(await page.getByTestId('login-submit').count(), 0)
  })
})
