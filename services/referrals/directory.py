"""The partner directory as Open Referral HSDS 3 documents: one organisation with its services,
locations, addresses, phones, languages, contacts and schedules nested, as the HSDS API's
`full` organisation. Pure functions: normalise, validate against the HSDS schemas shipped in
hsds/, and exchange the whole directory as JSON (an array of organisations) or as HSDS's tabular
form (one CSV per table, zipped with a datapackage.json).

Fields HSDS does not have are extensions named `x_…`: `x_region` (+ `x_region_derived`,
`x_region_basis`) on locations, `x_i18n` ({"name": {"fr": …, "nl": …, "en": …}}) for texts known
in several languages, `x_source_text` and `x_seed_notes` for provenance, `x_website_listed`,
`x_referral_email` and `x_notice_language` for referral notices.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .domain import REGIONS

HSDS = Path(__file__).parent / "hsds" / "components"
SEED_FILE = Path(__file__).parent / "seed" / "directory.json"

# Array key -> HSDS table (kind). A child of a parent of kind K carries `K_id`, except
# attributes (link_id + link_entity) and metadata (resource_id + resource_type).
KIND = {
    "organizations": "organization", "services": "service", "locations": "location", "addresses": "address",
    "phones": "phone", "languages": "language", "contacts": "contact", "schedules": "schedule",
    "attributes": "attribute", "service_areas": "service_area", "service_at_locations": "service_at_location",
    "funding": "funding", "programs": "program", "cost_options": "cost_option", "required_documents": "required_document",
    "organization_identifiers": "organization_identifier", "accessibility": "accessibility", "metadata": "metadata",
}
# When a row names several parents, the most specific one owns it.
PARENT_KEYS = ("phone_id", "contact_id", "service_at_location_id", "service_id", "location_id", "organization_id")
X_BOOLEAN = {"x_region_derived", "x_website_listed"}
X_JSON = {"x_i18n"}


class InvalidDirectory(ValueError):
    """An import that does not fit HSDS 3 or this directory's rules; `errors` says where."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:5]))
        self.errors = errors


# --- normalising -----------------------------------------------------------------------------


def _empty(value) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _clean(value):
    if isinstance(value, dict):
        cleaned = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if not _empty(v)}
    if isinstance(value, list):
        return [c for c in (_clean(v) for v in value) if not _empty(c)]
    return value


def _link_children(entity: dict, kind: str) -> None:
    for key, value in entity.items():
        if not (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            continue
        child_kind = KIND.get(key, key.rstrip("s"))
        for child in value:
            if key == "attributes":
                child["link_id"], child["link_entity"] = entity["id"], kind
                if isinstance(child.get("taxonomy_term"), dict):
                    child["taxonomy_term_id"] = child["taxonomy_term"]["id"]
            elif key == "metadata":
                child["resource_id"], child["resource_type"] = entity["id"], kind
            else:
                for fk in PARENT_KEYS:
                    if fk != f"{kind}_id":
                        child.pop(fk, None)
                child[f"{kind}_id"] = entity["id"]
            _link_children(child, child_kind)


def normalise(org: dict) -> dict:
    """The canonical form the store keeps and exports: empty values dropped, every nested
    record pointing at its parent (`organization_id`, `service_id`, …) as HSDS's tables do."""
    org = _clean(json.loads(json.dumps(org)))
    _link_children(org, "organization")
    return org


# --- validating ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = []
    for path in HSDS.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(schema, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@lru_cache(maxsize=8)
def validator(table: str) -> Draft202012Validator:
    """Validator for one HSDS table schema (e.g. `organization.json`), $refs resolved locally."""
    schema = _registry()[table].contents
    return Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())


def _path(prefix: str, error) -> str:
    where = prefix
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def hsds_errors(org: dict, where: str = "organization") -> list[str]:
    """HSDS 3 schema errors of one organisation with its services nested."""
    errors = []
    without_services = {k: v for k, v in org.items() if k != "services"}
    for error in validator("organization.json").iter_errors(without_services):
        errors.append(f"{_path(where, error)}: {error.message}")
    services = org.get("services") or []
    if not isinstance(services, list):
        return [*errors, f"{where}.services: must be an array"]
    for i, service in enumerate(services):
        for error in validator("service.json").iter_errors(service):
            errors.append(f"{_path(f'{where}.services[{i}]', error)}: {error.message}")
    return errors


def _ids(entity, seen: dict, where: str, errors: list[str]) -> None:
    if isinstance(entity, dict):
        if "id" in entity:
            if entity["id"] in seen:
                errors.append(f"{where}.id: {entity['id']} is used twice (also at {seen[entity['id']]})")
            seen[entity["id"]] = where
        for key, value in entity.items():
            if key != "taxonomy_term":
                _ids(value, seen, f"{where}.{key}", errors)
    elif isinstance(entity, list):
        for i, item in enumerate(entity):
            _ids(item, seen, f"{where}[{i}]", errors)


def directory_errors(orgs: list[dict]) -> list[str]:
    errors: list[str] = []
    seen: dict[str, str] = {}
    for i, org in enumerate(orgs):
        where = f"organizations[{i}]"
        if not isinstance(org, dict):
            errors.append(f"{where}: must be an object")
            continue
        errors += hsds_errors(org, where)
        _ids(org, seen, where, errors)
        for j, location in enumerate(org.get("locations") or []):
            if location.get("x_region") not in (None, *REGIONS):
                errors.append(f"{where}.locations[{j}].x_region: must be one of {', '.join(REGIONS)}")
    return errors


def checked(orgs: list[dict]) -> list[dict]:
    """Normalised organisations, or InvalidDirectory naming every problem and where it is."""
    if not isinstance(orgs, list):
        raise InvalidDirectory(["organizations: expected an array of HSDS organisations"])
    errors = directory_errors(orgs)
    if errors:
        raise InvalidDirectory(errors)
    return [normalise(org) for org in orgs]


def load_seed(path: Path = SEED_FILE) -> list[dict]:
    return checked(json.loads(Path(path).read_text(encoding="utf-8")))


# --- JSON exchange ---------------------------------------------------------------------------


def export_json(orgs: list[dict]) -> bytes:
    return json.dumps(orgs, ensure_ascii=False, indent=1).encode("utf-8")


def import_json(data: bytes | str | list | dict) -> list[dict]:
    """A JSON array of organisations; also accepts an HSDS API page (`contents`) or `organizations`."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InvalidDirectory([f"body: not JSON ({exc})"]) from None
    if isinstance(data, dict):
        data = data.get("contents", data.get("organizations"))
    return checked(data)


# --- CSV exchange (HSDS tabular form) --------------------------------------------------------


def _schema_properties(kind: str) -> dict:
    try:
        return _registry()[f"{kind}.json"].contents.get("properties", {})
    except Exception:
        return {}


def _is_table(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _flatten(entity: dict, kind: str, tables: dict[str, list[dict]]) -> None:
    row = {}
    for key, value in entity.items():
        if _is_table(value):
            for child in value:
                _flatten(child, KIND.get(key, key.rstrip("s")), tables)
        elif kind == "attribute" and key == "taxonomy_term" and isinstance(value, dict):
            terms = tables.setdefault("taxonomy_term", [])
            if all(t["id"] != value["id"] for t in terms):
                _flatten(value, "taxonomy_term", tables)
        else:
            row[key] = value
    tables.setdefault(kind, []).append(row)


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def _columns(kind: str, rows: list[dict]) -> list[str]:
    present = {k for row in rows for k in row}
    ordered = [k for k in _schema_properties(kind) if k in present]
    return ordered + sorted(present - set(ordered))


def _table_file(kind: str) -> str:
    plural = {"address": "addresses", "accessibility": "accessibility", "funding": "funding", "metadata": "metadata"}
    return plural.get(kind, kind + "s") + ".csv"


def _entry(name: str) -> zipfile.ZipInfo:
    # A fixed date, not the export's time: the same directory always gives the same bytes, so
    # partners can tell at once whether anything changed.
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def export_csv_zip(orgs: list[dict]) -> bytes:
    tables: dict[str, list[dict]] = {}
    for org in orgs:
        _flatten(org, "organization", tables)
    buffer = io.BytesIO()
    resources = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for kind, rows in tables.items():
            columns = _columns(kind, rows)
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\r\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(v) for k, v in row.items()})
            archive.writestr(_entry(_table_file(kind)), text.getvalue())
            resources.append({"name": kind, "path": _table_file(kind), "profile": "tabular-data-resource",
                              "format": "csv", "mediatype": "text/csv", "encoding": "utf-8"})
        archive.writestr(_entry("datapackage.json"), json.dumps({
            "name": "refuge-partner-directory", "profile": "tabular-data-package",
            "description": "Open Referral HSDS 3 tables; x_ columns are this directory's extensions",
            "resources": resources}, indent=1))
    return buffer.getvalue()


def _value(kind: str, column: str, text: str):
    if text == "":
        return None
    if column in X_BOOLEAN:
        return text == "true"
    if column in X_JSON:
        return json.loads(text)
    spec = {} if column.startswith("x_") else _schema_properties(kind).get(column, {})
    if spec.get("type") == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    if spec.get("type") in (None, "array", "object") and text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def import_csv_zip(data: bytes) -> list[dict]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InvalidDirectory(["file: not a zip archive of HSDS CSV tables"]) from None
    tables: dict[str, list[dict]] = {}
    kinds = {_table_file(k): k for k in set(KIND.values()) | {"taxonomy_term"}}
    with archive:
        for name in archive.namelist():
            kind = kinds.get(Path(name).name)
            if kind is None:
                continue
            reader = csv.DictReader(io.StringIO(archive.read(name).decode("utf-8-sig")))
            tables[kind] = [{k: v for k, v in ((c, _value(kind, c, t or "")) for c, t in row.items() if c) if v is not None}
                            for row in reader]
    if "organization" not in tables:
        raise InvalidDirectory(["organizations.csv: missing from the archive"])

    terms = {t["id"]: t for t in tables.pop("taxonomy_term", [])}
    owners: dict[tuple[str, str], dict] = {}
    for kind, rows in tables.items():
        for row in rows:
            owners[(kind, row.get("id", ""))] = row
    array_key = {kind: key for key, kind in KIND.items()}
    errors = []
    for kind, rows in tables.items():
        if kind == "organization":
            continue
        key = array_key[kind]
        for row in rows:
            parent = _parent_of(kind, row, owners)
            if parent is None:
                errors.append(f"{_table_file(kind)}: row {row.get('id', '?')} names no parent present in the archive")
                continue
            if kind == "attribute" and row.get("taxonomy_term_id") in terms:
                row["taxonomy_term"] = dict(terms[row["taxonomy_term_id"]])
            parent.setdefault(key, []).append(row)
    if errors:
        raise InvalidDirectory(errors)
    return checked(tables["organization"])


def _parent_of(kind: str, row: dict, owners: dict) -> dict | None:
    if kind == "attribute":
        return owners.get((row.get("link_entity", ""), row.get("link_id", "")))
    if kind == "metadata":
        return owners.get((row.get("resource_type", ""), row.get("resource_id", "")))
    for fk in PARENT_KEYS:
        if row.get(fk) and (parent := owners.get((fk[:-3], row[fk]))) is not None:
            return parent
    return None
