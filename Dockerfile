# The kubetrain image: the operator (`python -m kubetrain`, the default) and the node agent
# (`python -m kubetrain.nodeagent`). Build from the repository root:
#   docker build -t <registry>/kubetrain-operator:0.1.0 .
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY components ./components
RUN pip install --no-cache-dir '.[operator]' && rm -rf /src
WORKDIR /
USER 65532:65532
CMD ["python", "-m", "kubetrain"]
