"""Drives the HubSpot sandbox through HubSpot's official Python client
(hubspot-api-client), with only the host changed. Every call goes through
the client's generated models, so an answer they reject, or a field they
expect and do not get, fails here.

Usage: python_check.py BASE_URL TOKEN LIMITED_URL
  LIMITED_URL: a second sandbox allowing 5 requests per 10 s (for the 429).
"""

import http.server
import json
import sys
import threading
import time
import urllib.parse
import urllib.request

from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.schemas import ObjectSchemaEgg, ObjectTypeDefinitionLabels, ObjectTypePropertyCreate
from hubspot.utils.signature import Signature
from hubspot.webhooks import SettingsChangeRequest, SubscriptionCreateRequest

BASE, TOKEN, LIMITED = sys.argv[1], sys.argv[2], sys.argv[3]
checks = []


def check(name, cond, detail=""):
    checks.append(name)
    if not cond:
        raise AssertionError(f"{name}: {detail}")


client = HubSpot(access_token=TOKEN, host=BASE)
contacts = client.crm.contacts
companies = client.crm.companies

# --- basic CRUD ---
c = contacts.basic_api.create(
    simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
        properties={"email": "Ada@Example.com", "firstname": "Ada", "lastname": "Lovelace"}
    )
)
check("create returns a string id", isinstance(c.id, str) and c.id.isdigit(), c.id)
check("email stored lower-case", c.properties["email"] == "ada@example.com", c.properties)
check("createdAt is a datetime", c.created_at is not None)
got = contacts.basic_api.get_by_id(c.id, properties=["email", "firstname", "lifecyclestage"])
check("read back", got.properties["firstname"] == "Ada", got.properties)
check("lastmodifieddate present", "lastmodifieddate" in got.properties, got.properties)
by_email = contacts.basic_api.get_by_id("ada@example.com", id_property="email")
check("read by idProperty=email", by_email.id == c.id)
upd = contacts.basic_api.update(c.id, simple_public_object_input=SimplePublicObjectInput(properties={"lastname": "King"}))
check("update", upd.properties["lastname"] == "King", upd.properties)
check("updatedAt moved", upd.updated_at >= got.updated_at)

# --- 409 duplicate, in HubSpot's words ---
try:
    contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"email": "ada@example.com"})
    )
    check("duplicate email refused", False, "no error")
except ApiException as e:
    body = json.loads(e.body)
    check("duplicate is 409", e.status == 409, e.status)
    check("409 names the existing id", body["message"] == f"Contact already exists. Existing ID: {c.id}", body)
    check("409 category", body["category"] == "CONFLICT", body)

# --- 400 validation ---
try:
    contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"email": "x@y.co", "no_such_prop": "1"})
    )
    check("unknown property refused", False, "no error")
except ApiException as e:
    body = json.loads(e.body)
    check("unknown property is 400", e.status == 400 and body["category"] == "VALIDATION_ERROR", body)
    check("its code", body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST", body)

# --- 404 ---
try:
    contacts.basic_api.get_by_id("999999999")
    check("missing id is 404", False, "no error")
except ApiException as e:
    check("missing id is 404", e.status == 404, e.status)

# --- batch ---
inputs = [
    SimplePublicObjectBatchInputForCreate(properties={"email": f"batch{i}@example.com", "firstname": f"B{i}"})
    for i in range(30)
]
created = contacts.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
check("batch create", len(created.results) == 30 and created.status == "COMPLETE", created.status)
ids = [r.id for r in created.results]
read = contacts.batch_api.read(
    BatchReadInputSimplePublicObjectId(properties=["email"], inputs=[SimplePublicObjectId(id=i) for i in ids[:10] + ["123456789"]])
)
check("batch read with a missing id", len(read.results) == 10, len(read.results))
check("batch read reports the missing id", read.errors and read.errors[0].context["ids"] == ["123456789"], read)
updated = contacts.batch_api.update(
    BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=i, properties={"lastname": "Batched"}) for i in ids[:5]]
    )
)
check("batch update", len(updated.results) == 5)
partial = contacts.batch_api.update(
    BatchInputSimplePublicObjectBatchInput(
        inputs=[
            SimplePublicObjectBatchInput(id=ids[0], properties={"lastname": "Ok"}),
            SimplePublicObjectBatchInput(id=ids[1], properties={"lifecyclestage": "not-a-stage"}),
        ]
    )
)
check("207 partial update", len(partial.results) == 1 and partial.num_errors == 1, partial)
check("207 names the failed id", partial.errors[0].context["ids"] == [ids[1]], partial.errors[0])
up = contacts.batch_api.upsert(
    BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(id="batch0@example.com", id_property="email", properties={"firstname": "Upserted"}),
            SimplePublicObjectBatchInputUpsert(id="fresh@example.com", id_property="email", properties={"firstname": "New"}),
        ]
    )
)
news = sorted(r.new for r in up.results)
check("upsert by email: one updated, one new", news == [False, True], news)
contacts.batch_api.archive(BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=ids[-1])]))
try:
    contacts.basic_api.get_by_id(ids[-1])
    check("archived is gone", False, "no error")
except ApiException as e:
    check("archived is gone", e.status == 404, e.status)
archived = contacts.basic_api.get_page(archived=True)
check("archived listing", any(r.id == ids[-1] and r.archived for r in archived.results), archived)

# --- list paging through the client's own get_all ---
everything = contacts.get_all()
check("get_all pages everything", len(everything) == 31, len(everything))

# --- search with paging ---
req = PublicObjectSearchRequest(
    filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="CONTAINS_TOKEN", value="*@example.com")])],
    sorts=["email"],
    properties=["email", "firstname"],
    limit=10,
)
seen, after, pages = [], None, 0
while True:
    req.after = after
    page = contacts.search_api.do_search(public_object_search_request=req)
    seen += [r.properties["email"] for r in page.results]
    pages += 1
    if not page.paging:
        break
    after = page.paging.next.after
    time.sleep(0.25)  # the search limit is 5 per second
check("search total", page.total == 31, page.total)
check("search pages", pages == 4 and len(seen) == 31, (pages, len(seen)))
check("search sorted", seen == sorted(seen), seen[:5])

# --- properties ---
props = client.crm.properties.core_api.get_all("contacts")
names = {p.name for p in props.results}
check("properties list", {"email", "firstname", "lifecyclestage", "lastmodifieddate"} <= names, names)
stage = next(p for p in props.results if p.name == "lifecyclestage")
check("enumeration options", stage.type == "enumeration" and any(o.value == "customer" for o in stage.options), stage)
made = client.crm.properties.core_api.create(
    "contacts",
    PropertyCreate(name="erp_id", label="ERP id", type="string", field_type="text", group_name="contactinformation", has_unique_value=True),
)
check("custom property", made.name == "erp_id" and made.has_unique_value, made)

# --- associations v4 ---
co = companies.basic_api.create(
    simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties={"name": "Analytical Engines", "domain": "engines.example"})
)
labels = client.crm.associations.v4.basic_api.create(
    "contacts", c.id, "companies", co.id, [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)]
)
check("association with the primary label", labels.labels == ["Primary"], labels)
page = client.crm.associations.v4.basic_api.get_page("contacts", c.id, "companies")
type_ids = sorted(t.type_id for t in page.results[0].association_types)
check("primary and unlabeled types", str(page.results[0].to_object_id) == co.id and type_ids == [1, 279], page)
batch = client.crm.associations.v4.batch_api.create(
    "contacts",
    "companies",
    BatchInputPublicAssociationMultiPost(
        inputs=[
            PublicAssociationMultiPost(
                _from=SimplePublicObjectId(id=i), to=SimplePublicObjectId(id=co.id),
                types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)],
            )
            for i in ids[:3]
        ]
    ),
)
check("batch associations", len(batch.results) == 3, batch)
fetched = client.crm.associations.v4.batch_api.get_page(
    "companies", "contacts", BatchInputPublicFetchAssociationsBatchRequest(inputs=[PublicFetchAssociationsBatchRequest(id=co.id)])
)
check("batch association read", len(fetched.results[0].to) == 4, fetched)
with_assoc = contacts.basic_api.get_by_id(c.id, associations=["companies"])
check("read with associations", with_assoc.associations["companies"].results[0].id == co.id, with_assoc.associations)

# --- custom objects ---
schema = client.crm.schemas.core_api.create(
    ObjectSchemaEgg(
        name="machines",
        labels=ObjectTypeDefinitionLabels(singular="Machine", plural="Machines"),
        primary_display_property="serial",
        required_properties=["serial"],
        properties=[ObjectTypePropertyCreate(name="serial", label="Serial", type="string", field_type="text")],
        associated_objects=["CONTACT"],
    )
)
check("custom object schema", schema.object_type_id.startswith("2-"), schema)
m = client.crm.objects.basic_api.create(schema.object_type_id, SimplePublicObjectInputForCreate(properties={"serial": "AE-1"}))
check("custom object record", m.properties["serial"] == "AE-1", m)

# --- OAuth: authorization code, then the API with the access token ---
redirect = "http://localhost/callback"
q = urllib.parse.urlencode({"client_id": "sandbox-client-id", "redirect_uri": redirect, "scope": "crm.objects.contacts.read", "state": "xyz"})


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


try:
    urllib.request.build_opener(NoRedirect).open(f"{BASE}/oauth/authorize?{q}")
    raise AssertionError("authorize did not redirect")
except urllib.error.HTTPError as e:
    location = e.headers["Location"]
code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
tokens = client.oauth.tokens_api.create(
    grant_type="authorization_code", code=code, redirect_uri=redirect, client_id="sandbox-client-id", client_secret="sandbox-client-secret"
)
check("oauth tokens", tokens.expires_in == 1800 and tokens.refresh_token, tokens)
oauth_client = HubSpot(access_token=tokens.access_token, host=BASE)
check("api with an oauth token", oauth_client.crm.contacts.basic_api.get_by_id(c.id).id == c.id)
refreshed = client.oauth.tokens_api.create(
    grant_type="refresh_token", refresh_token=tokens.refresh_token, client_id="sandbox-client-id", client_secret="sandbox-client-secret"
)
check("refresh", refreshed.access_token != tokens.access_token and refreshed.refresh_token == tokens.refresh_token)
try:
    HubSpot(access_token="wrong", host=BASE).crm.contacts.basic_api.get_page()
    check("401 on a bad token", False, "no error")
except ApiException as e:
    check("401 on a bad token", e.status == 401 and json.loads(e.body)["category"] == "INVALID_AUTHENTICATION", e.body)

# --- webhooks, signature checked with the client's own helper ---
received = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        uri = f"http://127.0.0.1:{self.server.server_port}{self.path}"
        ok = Signature.is_valid(
            signature=self.headers["X-HubSpot-Signature-v3"], client_secret="sandbox-client-secret", request_body=body,
            http_uri=uri, http_method="POST", signature_version="v3", timestamp=self.headers["X-HubSpot-Request-Timestamp"],
        )
        v1 = Signature.is_valid(signature=self.headers["X-HubSpot-Signature"], client_secret="sandbox-client-secret", request_body=body, signature_version="v1")
        received.append((ok and v1, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
dev = HubSpot(api_key="sandbox-developer-key", host=BASE)
dev.webhooks.settings_api.configure(1234567, SettingsChangeRequest(target_url=f"http://127.0.0.1:{server.server_port}/hook"))
sub = dev.webhooks.subscriptions_api.create(1234567, SubscriptionCreateRequest(event_type="contact.propertyChange", property_name="firstname", active=True))
check("subscription", sub.event_type == "contact.propertyChange", sub)
contacts.basic_api.update(c.id, simple_public_object_input=SimplePublicObjectInput(properties={"firstname": "Augusta"}))
deadline = time.time() + 10
while not received and time.time() < deadline:
    time.sleep(0.05)
check("webhook delivered", received, "nothing arrived")
ok, events = received[0]
check("webhook signatures valid (v3 and v1)", ok, events)
check("webhook event", events[0]["subscriptionType"] == "contact.propertyChange" and str(events[0]["objectId"]) == c.id and events[0]["propertyValue"] == "Augusta", events)

# --- 429, on a sandbox that allows 5 requests per 10 s ---
limited = HubSpot(access_token=TOKEN, host=LIMITED)
statuses = []
for _ in range(7):
    try:
        limited.crm.contacts.basic_api.get_page(limit=1)
        statuses.append(200)
    except ApiException as e:
        statuses.append(e.status)
        body, headers = json.loads(e.body), e.headers
check("429 after the limit", statuses == [200] * 5 + [429, 429], statuses)
check("429 body", body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT", body)
check("rate-limit headers", headers["X-HubSpot-RateLimit-Remaining"] == "0" and headers["X-HubSpot-RateLimit-Max"] == "5", dict(headers))

print(json.dumps({"ok": True, "checks": len(checks)}))
