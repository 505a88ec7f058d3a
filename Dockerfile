# fhir-server container image (docs/operations.md). Two stages on the same Debian/Python base:
#   build    npm (HL7's definitions package), the project installed into a venv by scripts/bootstrap
#   runtime  tesseract and fonts (scripts/system-packages runtime), the venv, a non-root user
# The install steps are the scripts .ci/run and a developer use: scripts/system-packages, scripts/bootstrap.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV SYSTEM_PACKAGES_SLIM=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY scripts/system-packages scripts/bootstrap scripts/
RUN bash scripts/system-packages build
COPY pyproject.toml README.md ./
COPY fhir_server fhir_server
COPY ingest ingest
COPY profiles profiles
COPY terminology terminology
RUN FHIR_BOOTSTRAP=image FHIR_VENV=/opt/fhir-server bash scripts/bootstrap
# HL7's hl7.fhir.r4.examples 4.0.1, fetched now so that the image never reaches npm at run time
RUN FHIR_SPEC_PACKAGE_DIR=/opt/hl7/hl7.fhir.r4.examples/package \
    /opt/fhir-server/bin/python -c "from fhir_server import spec_package; print(spec_package.ensure())"

FROM ${PYTHON_IMAGE} AS runtime
ENV SYSTEM_PACKAGES_SLIM=1
COPY scripts/system-packages /usr/local/sbin/system-packages
RUN bash /usr/local/sbin/system-packages runtime && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fhir --create-home fhir \
    && install -d -o fhir -g fhir /var/lib/fhir/data  # a new volume mounted here takes this owner
COPY --from=build /opt/fhir-server /opt/fhir-server
COPY --from=build /opt/hl7 /opt/hl7
ENV PATH=/opt/fhir-server/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FHIR_SPEC_PACKAGE_DIR=/opt/hl7/hl7.fhir.r4.examples/package \
    FHIR_HOST=0.0.0.0 \
    FHIR_PORT=8080 \
    FHIR_DATA_DIR=/var/lib/fhir/data \
    FHIR_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/fhir
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]
CMD ["fhir-server", "serve", "--no-demo"]
