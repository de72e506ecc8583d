package org.shopsearch.es;

import org.elasticsearch.TransportVersion;
import org.elasticsearch.common.ParsingException;
import org.elasticsearch.common.io.stream.StreamInput;
import org.elasticsearch.common.io.stream.StreamOutput;
import org.elasticsearch.search.SearchExtBuilder;
import org.elasticsearch.xcontent.XContentBuilder;
import org.elasticsearch.xcontent.XContentParser;

import java.io.IOException;

/**
 * {@code "ext": {"shopsearch_outcome": {}}}: the opt-in for each hit's structured outcome
 * ({@link OutcomeFetchSubPhase}). An empty object, so options can be added without a new name.
 */
public final class OutcomeSearchExt extends SearchExtBuilder {
    public static final String NAME = "shopsearch_outcome";

    OutcomeSearchExt() {}

    OutcomeSearchExt(StreamInput in) {}

    static OutcomeSearchExt fromXContent(XContentParser parser) throws IOException {
        XContentParser.Token token = parser.currentToken();
        if (token != XContentParser.Token.START_OBJECT || parser.nextToken() != XContentParser.Token.END_OBJECT) {
            throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] takes an empty object: {\"" + NAME + "\": {}}");
        }
        return new OutcomeSearchExt();
    }

    @Override
    public String getWriteableName() {
        return NAME;
    }

    @Override
    public void writeTo(StreamOutput out) {}

    @Override
    public XContentBuilder toXContent(XContentBuilder builder, Params params) throws IOException {
        return builder.startObject(NAME).endObject();
    }

    @Override
    public TransportVersion getMinimalSupportedVersion() {
        return TransportVersion.zero();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof OutcomeSearchExt;
    }

    @Override
    public int hashCode() {
        return NAME.hashCode();
    }
}
