"""Ingest adapters: sources -> FHIR R4 transaction Bundles of conditional creates (https://hl7.org/fhir/R4/http.html#transaction).

Adapters are pure: a source file in, transaction Bundles (plain dicts) and a problem report out.
They never touch a database or the network (:mod:`ingest.remote` posts bundles, separately).

Shared core (stable API)
========================

``ingest.report``
    ``Problem(file: str, location: int | str, message: str, severity: Severity = "error")`` --
    ``location`` is a 1-based line number or an element path (``"HealthData/Record[12]"``,
    ``"$[3].data"``); ``Severity = Literal["fatal", "error", "warning", "information"]``;
    ``str(problem)`` -> ``"file:line 3: error: message"``; ``.as_issue()`` -> OperationOutcome.issue.
    ``IngestResult(bundles: list[dict], problems: list[Problem], counts: Counter[str])`` with
    ``.ok``, ``.resources``, ``.resources_of(type)``, ``.outcome()`` and ``.merge(other)``.

``ingest.mapping``
    ``Measure(key, code, display, units, category, profile=None, extra_codes=(), components=(),
    unit_aliases={}, unit_variants={})`` with ``.unit`` (canonical UCUM), ``.profiles``,
    ``.codeable_concept()``, ``.category_concept()``; ``MEASURES: dict[str, Measure]``;
    ``measure(metric) -> Measure`` (keys and aliases, raises ``UnknownMeasure``);
    ``measure_for_code(loinc) -> Measure | None``; ``resolve(metric, unit_text) -> (Measure, ucum)``;
    ``register(measure, *aliases)`` to add measures (more lab tests, say). Keys: heart_rate,
    resting_heart_rate, respiratory_rate, oxygen_saturation, body_temperature, body_height, body_weight, bmi,
    blood_pressure (panel of systolic_bp/diastolic_bp), steps (daily), steps_interval,
    blood_glucose (mg/dL), blood_glucose_molar (mmol/L), hba1c, sleep_duration, sleep_deep,
    sleep_light, sleep_rem.

``ingest.units``
    ``canonical_unit(text, aliases=None) -> str`` (alias or UCUM -> UCUM code, raises
    ``UnitError``); ``is_ucum(code) -> bool``; ``convert(Decimal, from_ucum, to_ucum) -> Decimal``
    (raises ``UnitError``, or its subclass ``ValueRangeError`` for a value too large or small to convert);
    ``parse_number(text) -> Decimal`` (raises ``ValueError``); ``json_number(Decimal) -> int | float``;
    ``format_number(n) -> str``; ``display(code) -> str``; ``UCUM_SYSTEM``.

``ingest.observation``
    ``Sample(metric, start, value=None, unit=None, end=None, components=(), device=None,
    patient=None, location="")`` and ``Component(metric, value, unit=None)`` -- what adapters
    yield; ``resolve(sample, default_tz=None) -> Resolved`` (raises ``SampleError``);
    ``identifier_value(resolved, *, source, device_key, patient) -> str``;
    ``build(resolved, *, patient_ref, identifier, device_ref=None, status="final") -> dict``;
    ``entry(sample, *, source, patient_ref, device_ref=None, default_tz=None) -> Entry`` (the
    Observation as ``POST Observation`` with ``ifNoneExist: identifier=urn:fhir-server:ingest|<hash>``);
    ``fhir_datetime(text, default_tz=None) -> str``; ``INGEST_SYSTEM``.

``ingest.device``
    ``DeviceInfo(source, name, manufacturer=None, model=None, hardware=None, software=None,
    kind="device" | "app")`` with ``.key``, ``.identifier_value``, ``.full_url``,
    ``.conditional_reference`` (``Device?identifier=...``), ``.resource()``, ``.entry()``.

``ingest.bundle``
    ``Entry(full_url, resource, if_none_exist=None, method="POST", url=None)`` with ``.as_dict()``;
    ``conditional_create(resource, system, value, *, search="identifier") -> Entry``;
    ``full_url_for(system, value) -> str`` (deterministic urn:uuid); ``transaction(entries) -> dict``;
    ``BatchWriter(batch_size=500, provenance=None)`` with ``.add(entry, requires=()) -> bool``
    (False = duplicate in batch), ``.flush()``, ``.has_ready``, ``.drain()``, ``.close()``.

``ingest.provenance``
    ``ProvenanceSpec(source, file="", recorded=now, agent_display=...)`` -- the ``provenance=``
    of a ``BatchWriter``: each batch ends with a Provenance targeting its primary entries.

``ingest.pipeline``
    ``ingest_file(path, format, patient_ref, *, batch_size=500, default_tz=None, options=None,
    recorded=None, max_problems=10000) -> IngestResult``; ``iter_file(...) -> IngestRun`` (same
    arguments; iterate for bundles, then ``.problems``/``.counts``); ``ingest_samples(samples, *,
    source, patient_ref, file="", batch_size=500, default_tz=None, recorded=None, ctx=None) ->
    IngestResult``; ``ReadContext(file, options={}, default_tz=None)`` with ``.problem(location,
    message, severity="error")`` and ``.skip(kind)``; ``Adapter`` protocol (``name: str``,
    ``read(path, ctx) -> Iterable[Sample]``) and ``DocumentAdapter`` protocol (``name: str``,
    ``ingest(path, ctx, patient_ref) -> list[Bundle dict]``: whole documents whose resources belong
    together; ``iter_file`` dispatches to either); ``register_adapter(name, adapter_or_"module:attr",
    *aliases)``, ``get_adapter(fmt)``, ``formats()``, ``detect_format(path)`` (``format="auto"``:
    suffix first, then ``DICM`` at byte 128, PDF/PNG/JPEG/TIFF/zip signatures, XML, JSON, CSV).
    Formats: csv, apple-health, health-connect, fitbit, open-mhealth, lab-report (``ingest.ocr:ADAPTER``),
    dicom (``ingest.dicom:ADAPTER``): an adapter package exposes a module-level ``ADAPTER``.
    Resources other than Observations (ImagingStudy, DiagnosticReport...) go through
    ``BatchWriter(batch_size, ProvenanceSpec(source, file))`` with ``conditional_create`` entries.

``ingest.document``
    ``document_reference(data, *, content_type, title, patient_ref, type_concept, identifier=None,
    description=None, category=None) -> Entry`` (the original file, attached, as a conditional
    create), ``attachment(data, content_type, title)``, ``sha256_hex(data)``, ``bundle(entries, *,
    source, file, recorded=None)`` (one transaction closed by its Provenance): the core of the
    document adapters.

``ingest.remote``
    ``post_bundles(bundles, base_url, *, client=None, headers=None, timeout=60.0,
    stop_on_error=False, progress=None) -> RemoteReport(posted, failed, created, existing, errors)``
    -- for the CLI's ``--to URL``; pass ``iter_file(...)`` to stream; ``progress(report, bundle)``
    is called after each bundle.

Adapters and their options
==========================
``csv`` (:mod:`ingest.csv_format`): long ``date,metric,value,unit[,patient]`` or wide
``date[,patient],<metric>[ (ucum)]...``; ``date`` may be ``start/end``; blood pressure ``120/80``;
``options={"mapping": {...}}`` or ``{"mapping_file": path}`` declares other layouts, checked
against ``MAPPING_SCHEMA`` (JSON Schema). ``export_csv(observations, layout="long" | "wide", *,
include_patient=None, delimiter=",") -> str`` writes Observations back (CSV -> FHIR -> CSV is
lossless for canonical values). ``apple-health``: export.xml or the export zip, streamed.
``health-connect``: HCGateway fetch output (``options["record_type"]`` names a bare list).
``fitbit``: Web API responses side by side (``options["timezone"]``, ``options["weight_unit"]``).
``open-mhealth``: data points (array, ``{"data_points": [...]}`` or NDJSON).

Bundle shape
============
Every bundle is a ``transaction`` with deterministic ``urn:uuid`` fullUrls: the Devices its
Observations use (conditional creates by ``identifier``), the Observations (conditional creates by
``identifier``), then one Provenance (conditional create by ``_tag``) targeting the Observations.
Each batch is self-contained, and re-ingesting the same data yields the same conditional
creates, so a server creates nothing new.
"""
