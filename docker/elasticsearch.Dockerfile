# Elasticsearch 8.19.21 with the shopsearch rescorer plugin (es_plugin/) installed: any client of
# this node can rerank with `"rescore": {"shopsearch": {"query_text": ...}}`.
# Stage 1 builds the plugin zip with Maven (stubs from proto/reranker.proto); stage 2 installs it.
FROM maven:3.9-eclipse-temurin-17 AS plugin
WORKDIR /build
COPY proto proto
COPY es_plugin/pom.xml es_plugin/pom.xml
RUN cd es_plugin && mvn -q -B dependency:go-offline || true
COPY es_plugin/src es_plugin/src
RUN cd es_plugin && mvn -q -B package

FROM docker.elastic.co/elasticsearch/elasticsearch:8.19.21
COPY --from=plugin /build/es_plugin/target/shopsearch-rerank-0.1.0.zip /tmp/shopsearch-rerank.zip
RUN bin/elasticsearch-plugin install --batch file:///tmp/shopsearch-rerank.zip && rm /tmp/shopsearch-rerank.zip
