"""Drives the HubSpot sandbox through hubspot3, a maintained Python client
of HubSpot's legacy endpoints, with only the base URL changed: property
listings through /properties/v1 (contacts, companies, deals) and
/properties/v2 (products, line items) as hubspot3 calls them, and the 404
of a path the sandbox does not serve, read as HubSpot's JSON error body.

Usage: legacy_check.py BASE_URL TOKEN
  The sandbox holds a custom contact property `favourite_colour`
  (enumeration: red, blue).
"""

import json
import sys

from hubspot3 import Hubspot3
from hubspot3.error import HubspotNotFound

BASE, TOKEN = sys.argv[1], sys.argv[2]
checks = []


def check(name, cond, detail=""):
    checks.append(name)
    if not cond:
        raise AssertionError(f"{name}: {detail}")


client = Hubspot3(access_token=TOKEN, api_base=BASE)

# The fields of a legacy property definition, as HubSpot's legacy reference
# lists them.
LEGACY = {
    "name", "label", "description", "groupName", "type", "fieldType", "options",
    "displayOrder", "formField", "readOnlyValue", "readOnlyDefinition", "hidden",
    "mutableDefinitionNotDeletable", "favorited", "favoritedOrder", "calculated",
    "externalOptions", "displayMode", "deleted", "hubspotDefined", "createdAt",
    "updatedAt", "createdUserId", "updatedUserId",
}
EXPECTED = {
    "contacts": ("email", "contactinformation"),
    "companies": ("domain", "companyinformation"),
    "deals": ("dealname", "dealinformation"),
    "products": ("price", "productinformation"),
    "line_items": ("quantity", None),
}

for obj, (prop, group) in EXPECTED.items():
    listed = client.properties.get_all(obj)
    check(f"{obj}: a JSON array", isinstance(listed, list) and listed, type(listed))
    by_name = {p["name"]: p for p in listed}
    check(f"{obj}: {prop} listed", prop in by_name, sorted(by_name))
    p = by_name[prop]
    missing = LEGACY - set(p)
    check(f"{obj}: legacy fields", not missing, missing)
    check(f"{obj}: hubspot-defined", p["hubspotDefined"] is True and p["readOnlyDefinition"] is True, p)
    if group:
        check(f"{obj}: group", p["groupName"] == group, p["groupName"])
    check(f"{obj}: no v3 fields", "modificationMetadata" not in p and "archived" not in p, p)
    check(
        f"{obj}: types",
        isinstance(p["displayOrder"], int) and isinstance(p["options"], list)
        and isinstance(p["formField"], bool) and isinstance(p["hidden"], bool),
        p,
    )

contacts = {p["name"]: p for p in client.properties.get_all("contacts")}
custom = contacts.get("favourite_colour")
check("custom property listed", custom is not None, sorted(contacts))
check(
    "custom property shape",
    custom["hubspotDefined"] is None and custom["deleted"] is False
    and isinstance(custom["createdAt"], int) and custom["type"] == "enumeration"
    and custom["fieldType"] == "select" and custom["readOnlyValue"] is False,
    custom,
)
check(
    "options",
    [(o["label"], o["value"], o["displayOrder"], o["hidden"]) for o in custom["options"]]
    == [("Red", "red", 0, False), ("Blue", "blue", 1, False)],
    custom["options"],
)
lifecycle = contacts["lifecyclestage"]
check("enumeration options", any(o["value"] == "customer" for o in lifecycle["options"]), lifecycle)

companies = client.companies_properties.get_all_companies_properties()
check(
    "companies properties client",
    isinstance(companies, list) and "name" in {p["name"] for p in companies},
    companies,
)

# A path the sandbox does not serve answers as HubSpot does: 404 and its
# JSON error body.
try:
    client.contacts.get_by_id("1001")
    check("404 for an unknown path", False, "no error")
except HubspotNotFound as e:
    body = json.loads(e.result.body)
    check("404 for an unknown path", e.result.status == 404, e.result.status)
    check(
        "404 body",
        body["status"] == "error" and body["message"] == "resource not found"
        and len(body["correlationId"]) == 36,
        body,
    )

print(json.dumps({"ok": True, "checks": len(checks)}))
