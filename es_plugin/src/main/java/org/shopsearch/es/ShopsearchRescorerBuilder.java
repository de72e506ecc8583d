package org.shopsearch.es;

import org.elasticsearch.TransportVersion;
import org.elasticsearch.action.ActionRequestValidationException;
import org.elasticsearch.common.ParsingException;
import org.elasticsearch.common.io.stream.StreamInput;
import org.elasticsearch.common.io.stream.StreamOutput;
import org.elasticsearch.index.query.QueryRewriteContext;
import org.elasticsearch.index.query.SearchExecutionContext;
import org.elasticsearch.search.builder.SearchSourceBuilder;
import org.elasticsearch.search.rescore.RescoreContext;
import org.elasticsearch.search.rescore.RescorerBuilder;
import org.elasticsearch.xcontent.XContentBuilder;
import org.elasticsearch.xcontent.XContentParser;

import java.io.IOException;
import java.util.Objects;
import java.util.Set;

import static org.elasticsearch.action.ValidateActions.addValidationError;

/**
 * {@code "rescore": {"window_size": 100, "shopsearch": {"query_text": "cordless drill"}}}
 *
 * Parameters: query_text (string, required), send_text (boolean, default false: send each hit's
 * title so the service can score items it has not indexed), model_version (string, optional: fail
 * unless the service runs this version). Anything else is a 400 naming the parameter; the service's
 * address is a node setting and cannot be set here.
 */
public final class ShopsearchRescorerBuilder extends RescorerBuilder<ShopsearchRescorerBuilder> {
    public static final String NAME = "shopsearch";
    static final Set<String> KNOWN = Set.of("query_text", "send_text", "model_version");
    // Names someone might try for the service's address: refused with the reason, not just "unknown".
    static final Set<String> ADDRESS_LIKE = Set.of("target", "address", "host", "port", "url", "endpoint", "channel");

    private final String queryText;
    private final boolean sendText;
    private final String modelVersion;  // null: whatever the service runs
    private final ShopsearchRescorer rescorer;  // the plugin's, with its link to the service (not on the wire)

    ShopsearchRescorerBuilder(String queryText, boolean sendText, String modelVersion, ShopsearchRescorer rescorer) {
        this.queryText = queryText;
        this.sendText = sendText;
        this.modelVersion = modelVersion;
        this.rescorer = rescorer;
    }

    ShopsearchRescorerBuilder(StreamInput in, ShopsearchRescorer rescorer) throws IOException {
        super(in);
        this.rescorer = rescorer;
        this.queryText = in.readString();
        this.sendText = in.readBoolean();
        this.modelVersion = in.readOptionalString();
    }

    @Override
    protected void doWriteTo(StreamOutput out) throws IOException {
        out.writeString(queryText);
        out.writeBoolean(sendText);
        out.writeOptionalString(modelVersion);
    }

    static ShopsearchRescorerBuilder fromXContent(XContentParser parser, ShopsearchRescorer rescorer) throws IOException {
        XContentParser.Token token = parser.currentToken();
        if (token == XContentParser.Token.FIELD_NAME) token = parser.nextToken();
        if (token != XContentParser.Token.START_OBJECT) {
            throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] must be an object with [query_text]");
        }
        String queryText = null;
        boolean sendText = false;
        String modelVersion = null;
        String field = null;
        while ((token = parser.nextToken()) != XContentParser.Token.END_OBJECT) {
            if (token == XContentParser.Token.FIELD_NAME) {
                field = parser.currentName();
                if (ADDRESS_LIKE.contains(field)) {
                    throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] does not take [" + field
                        + "]: the reranker's address is the node setting [" + RerankSettings.TARGET.getKey() + "], not a search parameter");
                }
                if (KNOWN.contains(field) == false) {
                    throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] unknown parameter [" + field
                        + "]; it takes query_text, send_text and model_version");
                }
                continue;
            }
            switch (field) {
                case "query_text" -> {
                    expect(parser, token, XContentParser.Token.VALUE_STRING, field, "a string");
                    queryText = parser.text();
                }
                case "send_text" -> {
                    expect(parser, token, XContentParser.Token.VALUE_BOOLEAN, field, "true or false");
                    sendText = parser.booleanValue();
                }
                case "model_version" -> {
                    expect(parser, token, XContentParser.Token.VALUE_STRING, field, "a string");
                    modelVersion = parser.text().isEmpty() ? null : parser.text();
                }
                default -> throw new IllegalStateException("unreachable: " + field);
            }
        }
        if (queryText == null) {
            throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] requires [query_text], the user's query as typed");
        }
        if (queryText.isBlank()) {
            throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] [query_text] must not be empty");
        }
        return new ShopsearchRescorerBuilder(queryText.strip(), sendText, modelVersion, rescorer);
    }

    private static void expect(XContentParser parser, XContentParser.Token got, XContentParser.Token wanted, String field,
                               String what) {
        if (got != wanted) {
            String kind = switch (got) {
                case START_OBJECT -> "an object";
                case START_ARRAY -> "an array";
                case VALUE_NUMBER -> "a number";
                case VALUE_BOOLEAN -> "a boolean";
                case VALUE_NULL -> "null";
                case VALUE_STRING -> "a string";
                default -> got.name();
            };
            throw new ParsingException(parser.getTokenLocation(), "[" + NAME + "] [" + field + "] must be " + what + ", got " + kind);
        }
    }

    @Override
    public ActionRequestValidationException validate(SearchSourceBuilder source, ActionRequestValidationException e) {
        e = super.validate(source, e);
        RerankerLink link = rescorer.link();
        int window = windowSize == null ? DEFAULT_WINDOW_SIZE : windowSize;
        if (link != null && window > link.maxWindow()) {
            e = addValidationError("[" + NAME + "] window_size [" + window + "] is over the limit of [" + link.maxWindow()
                + "] (node setting " + RerankSettings.MAX_WINDOW.getKey() + ")", e);
        }
        return e;
    }

    @Override
    protected void doXContent(XContentBuilder builder, Params params) throws IOException {
        builder.startObject(NAME);
        builder.field("query_text", queryText);
        builder.field("send_text", sendText);
        if (modelVersion != null) builder.field("model_version", modelVersion);
        builder.endObject();
    }

    @Override
    protected RescoreContext innerBuildContext(int windowSize, SearchExecutionContext context) throws IOException {
        RerankerLink link = rescorer.link();
        if (link != null && windowSize > link.maxWindow()) {  // the coordinating node checks too; settings may differ
            throw new IllegalArgumentException("[" + NAME + "] window_size [" + windowSize + "] is over the limit of ["
                + link.maxWindow() + "] (node setting " + RerankSettings.MAX_WINDOW.getKey() + ")");
        }
        return new ShopsearchRescorer.Context(windowSize, rescorer, queryText, sendText, modelVersion);
    }

    @Override
    public ShopsearchRescorerBuilder rewrite(QueryRewriteContext ctx) {
        return this;
    }

    @Override
    public String getWriteableName() {
        return NAME;
    }

    @Override
    public TransportVersion getMinimalSupportedVersion() {
        return TransportVersion.zero();
    }

    String queryText() { return queryText; }
    boolean sendText() { return sendText; }
    String modelVersion() { return modelVersion; }

    @Override
    public boolean equals(Object o) {
        if (super.equals(o) == false) return false;
        ShopsearchRescorerBuilder other = (ShopsearchRescorerBuilder) o;
        return queryText.equals(other.queryText) && sendText == other.sendText && Objects.equals(modelVersion, other.modelVersion);
    }

    @Override
    public int hashCode() {
        return Objects.hash(super.hashCode(), queryText, sendText, modelVersion);
    }
}
