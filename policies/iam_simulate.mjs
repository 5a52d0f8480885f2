// Evaluates IAM requests with @cloud-copilot/iam-simulate (test-only tooling, AGPL-3.0; never part
// of what the project deploys). Input on stdin, JSON:
//   { "policySets": { "<name>": { "identity": [{ "name", "policy" }], "boundary": [...] } },
//     "calls": [ { "set", "principal", "account", "action", "resource", "context",
//                  "resourcePolicy"?, "resourceAccount"? } ] }
// `resourceAccount` is the account that owns the resource (default `account`): a cross-account
// call (a role of the pipeline account assuming a target's role) needs both the identity policy
// and the resource policy (there: the role's trust policy) to allow it.
// Output on stdout: one JSON array, per call { "decision", "error"?, "why"? } where decision is
// Allowed, ImplicitlyDenied, ExplicitlyDenied or Error.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))

// Why an identity-policy evaluation did not allow: the statements that name the action, and
// what of theirs did not match (resource, condition), or that no statement names it.
function why(analysis) {
  const identity = analysis?.identityAnalysis
  if (!identity) return []
  const reasons = []
  for (const s of identity.denyStatements ?? []) {
    reasons.push(`denied by ${s.policyId}/${s.explain.identifier}`)
  }
  for (const s of identity.unmatchedStatements ?? []) {
    const e = s.explain
    if (!e.actionMatch || e.effect !== 'Allow') continue
    const parts = []
    if (!e.resourceMatch) parts.push('resource does not match')
    if (!e.conditionMatch) {
      const failed = (e.conditions ?? []).filter((c) => !c.matches)
      parts.push('condition fails: ' + failed.map((c) => `${c.operator} ${c.conditionKeyValue}`).join(', '))
    }
    reasons.push(`${s.policyId}/${e.identifier}: ${parts.join('; ')}`)
  }
  const resource = analysis.resourceAnalysis
  if (resource && !['Allowed', 'AllowedForAccount', 'NotApplicable'].includes(resource.result)) {
    reasons.push(`the resource policy does not allow it (${resource.result})`)
  }
  const boundary = analysis.permissionBoundaryAnalysis
  if (boundary && boundary.result !== 'Allowed') reasons.push('the permissions boundary does not allow it')
  return reasons
}

const results = []
for (const call of input.calls) {
  const set = input.policySets[call.set]
  const simulation = {
    request: {
      principal: call.principal,
      action: call.action,
      resource: { resource: call.resource, accountId: call.resourceAccount ?? call.account },
      contextVariables: call.context ?? {},
    },
    identityPolicies: set.identity,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    ...(set.boundary?.length ? { permissionBoundaryPolicies: set.boundary } : {}),
    ...(call.resourcePolicy ? { resourcePolicy: call.resourcePolicy } : {}),
  }
  let response
  try {
    response = await runSimulation(simulation, {})
  } catch (error) {
    results.push({ decision: 'Error', error: String(error) })
    continue
  }
  if (response.resultType === 'error') {
    results.push({ decision: 'Error', error: JSON.stringify(response.errors) })
  } else if (response.resultType === 'single') {
    const result = { decision: response.overallResult }
    if (response.overallResult !== 'Allowed') result.why = why(response.result.analysis)
    results.push(result)
  } else {
    const result = { decision: response.overallResult }
    if (response.overallResult !== 'Allowed') {
      result.why = response.results.flatMap((r) => why(r.analysis))
    }
    results.push(result)
  }
}
process.stdout.write(JSON.stringify(results))
