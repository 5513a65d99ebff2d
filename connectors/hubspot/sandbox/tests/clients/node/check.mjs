// Drives the HubSpot sandbox through HubSpot's official Node client
// (@hubspot/api-client), with only basePath changed: objects, batch
// (with a 207), search with paging, and the client's own getAll.
// Usage: node check.mjs BASE_URL TOKEN
import { Client } from '@hubspot/api-client'

const [base, token] = process.argv.slice(2)
const client = new Client({ accessToken: token, basePath: base })
let checks = 0
function check(name, cond, detail) {
  checks++
  if (!cond) throw new Error(`${name}: ${JSON.stringify(detail)}`)
}

const c = await client.crm.contacts.basicApi.create({ properties: { email: 'Grace@Example.com', firstname: 'Grace' }, associations: [] })
check('create', /^\d+$/.test(c.id) && c.properties.email === 'grace@example.com', c)
check('createdAt is a Date', c.createdAt instanceof Date, c.createdAt)
const got = await client.crm.contacts.basicApi.getById(c.id, ['email', 'firstname'])
check('read', got.properties.firstname === 'Grace', got)
const upd = await client.crm.contacts.basicApi.update(c.id, { properties: { lastname: 'Hopper' } })
check('update', upd.properties.lastname === 'Hopper', upd)
try {
  await client.crm.contacts.basicApi.create({ properties: { email: 'grace@example.com' }, associations: [] })
  check('duplicate refused', false, 'no error')
} catch (e) {
  check('409', e.code === 409 && e.body.message === `Contact already exists. Existing ID: ${c.id}`, e.body)
}

const created = await client.crm.contacts.batchApi.create({
  inputs: Array.from({ length: 25 }, (_, i) => ({ properties: { email: `node${i}@example.com`, firstname: `N${i}` }, associations: [] })),
})
check('batch create', created.results.length === 25 && created.status === 'COMPLETE', created.status)
const ids = created.results.map((r) => r.id)
const read = await client.crm.contacts.batchApi.read({ properties: ['email'], propertiesWithHistory: [], inputs: ids.slice(0, 5).map((id) => ({ id })) })
check('batch read', read.results.length === 5, read)
const partial = await client.crm.contacts.batchApi.update({
  inputs: [
    { id: ids[0], properties: { lastname: 'Ok' } },
    { id: ids[1], properties: { lifecyclestage: 'nonsense' } },
  ],
})
check('207 partial', partial.results.length === 1 && partial.numErrors === 1 && partial.errors[0].context.ids[0] === ids[1], partial)
const up = await client.crm.contacts.batchApi.upsert({
  inputs: [{ id: 'node0@example.com', idProperty: 'email', properties: { firstname: 'Up' } }],
})
check('upsert', up.results[0]._new === false && up.results[0].properties.firstname === 'Up', up)
await client.crm.contacts.batchApi.archive({ inputs: [{ id: ids[24] }] })

const all = await client.crm.contacts.getAll()
check('getAll', all.length === 25, all.length)

const co = await client.crm.companies.basicApi.create({ properties: { name: 'Cobol Inc', domain: 'cobol.example' }, associations: [] })
check('company', co.properties.domain === 'cobol.example', co)

let after
let seen = []
let pages = 0
let total
do {
  const page = await client.crm.contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: 'email', operator: 'CONTAINS_TOKEN', value: 'node*' }] }],
    sorts: ['-email'],
    properties: ['email'],
    limit: 10,
    after,
  })
  seen.push(...page.results.map((r) => r.properties.email))
  total = page.total
  after = page.paging?.next?.after
  pages++
  await new Promise((r) => setTimeout(r, 250))
} while (after)
check('search', total === 24 && seen.length === 24 && pages === 3, { total, pages, n: seen.length })
check('search sorted descending', seen.join() === [...seen].sort().reverse().join(), seen.slice(0, 3))

const props = await client.crm.properties.coreApi.getAll('companies')
check('properties', props.results.some((p) => p.name === 'industry' && p.options.length > 0), props.results.length)

console.log(JSON.stringify({ ok: true, checks }))
