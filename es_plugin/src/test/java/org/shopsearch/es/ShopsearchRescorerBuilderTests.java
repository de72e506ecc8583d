package org.shopsearch.es;

import org.elasticsearch.common.ParsingException;
import org.elasticsearch.common.Strings;
import org.elasticsearch.common.io.stream.BytesStreamOutput;
import org.elasticsearch.common.io.stream.StreamInput;
import org.elasticsearch.xcontent.ToXContent;
import org.elasticsearch.xcontent.XContentBuilder;
import org.elasticsearch.xcontent.XContentParser;
import org.elasticsearch.xcontent.XContentParserConfiguration;
import org.elasticsearch.xcontent.XContentType;
import org.elasticsearch.xcontent.json.JsonXContent;
import org.junit.Test;

import java.io.IOException;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

/** The rescore clause's body: what parses, what is refused and with which words, and the wire form. */
public class ShopsearchRescorerBuilderTests {
    private final ShopsearchRescorer rescorer = new ShopsearchRescorer(() -> null);

    private ShopsearchRescorerBuilder parse(String json) throws IOException {
        try (XContentParser parser = XContentType.JSON.xContent().createParser(XContentParserConfiguration.EMPTY, json)) {
            parser.nextToken();
            return ShopsearchRescorerBuilder.fromXContent(parser, rescorer);
        }
    }

    private String refusal(String json) {
        return assertThrows(ParsingException.class, () -> parse(json)).getMessage();
    }

    @Test
    public void aFullBodyParses() throws IOException {
        ShopsearchRescorerBuilder b = parse("{\"query_text\": \"  cordless drill \", \"send_text\": true, \"model_version\": \"v7\"}");
        assertEquals("cordless drill", b.queryText());
        assertTrue(b.sendText());
        assertEquals("v7", b.modelVersion());
    }

    @Test
    public void onlyTheQueryTextIsRequired() throws IOException {
        ShopsearchRescorerBuilder b = parse("{\"query_text\": \"drill\"}");
        assertFalse(b.sendText());
        assertNull(b.modelVersion());
        assertNull("an empty model_version means any", parse("{\"query_text\": \"drill\", \"model_version\": \"\"}").modelVersion());
    }

    @Test
    public void aMissingOrBlankQueryTextIsRefused() {
        assertEquals("[shopsearch] requires [query_text], the user's query as typed", refusal("{\"send_text\": true}"));
        assertEquals("[shopsearch] [query_text] must not be empty", refusal("{\"query_text\": \"   \"}"));
        assertEquals("[shopsearch] must be an object with [query_text]", refusal("\"drill\""));
    }

    @Test
    public void aWrongTypeNamesTheParameterAndWhatItGot() {
        assertEquals("[shopsearch] [query_text] must be a string, got a number", refusal("{\"query_text\": 3}"));
        assertEquals("[shopsearch] [query_text] must be a string, got an array", refusal("{\"query_text\": [\"a\"]}"));
        assertEquals("[shopsearch] [send_text] must be true or false, got a string", refusal("{\"query_text\": \"a\", \"send_text\": \"yes\"}"));
        assertEquals("[shopsearch] [model_version] must be a string, got null", refusal("{\"query_text\": \"a\", \"model_version\": null}"));
        assertEquals("[shopsearch] [send_text] must be true or false, got an object", refusal("{\"query_text\": \"a\", \"send_text\": {}}"));
    }

    @Test
    public void anUnknownKeyIsRefusedByName() {
        assertEquals("[shopsearch] unknown parameter [depth]; it takes query_text, send_text and model_version",
            refusal("{\"query_text\": \"a\", \"depth\": 5}"));
    }

    @Test
    public void theServicesAddressCannotComeFromASearch() {
        for (String field : ShopsearchRescorerBuilder.ADDRESS_LIKE) {
            assertEquals("[shopsearch] does not take [" + field + "]: the reranker's address is the node setting "
                + "[shopsearch.rerank.target], not a search parameter", refusal("{\"query_text\": \"a\", \"" + field + "\": \"h:1\"}"));
        }
    }

    @Test
    public void theWireFormRoundTrips() throws IOException {
        for (ShopsearchRescorerBuilder sent : new ShopsearchRescorerBuilder[] {
            new ShopsearchRescorerBuilder("cordless drill", true, "v7", rescorer).windowSize(40),
            new ShopsearchRescorerBuilder("drill", false, null, rescorer)}) {
            BytesStreamOutput out = new BytesStreamOutput();
            sent.writeTo(out);
            try (StreamInput in = out.bytes().streamInput()) {
                ShopsearchRescorerBuilder got = new ShopsearchRescorerBuilder(in, rescorer);
                assertEquals(sent, got);
                assertEquals(sent.hashCode(), got.hashCode());
                assertEquals(sent.windowSize(), got.windowSize());
                assertEquals("every byte read", 0, in.available());
            }
        }
    }

    @Test
    public void theJsonFormRoundTrips() throws IOException {
        ShopsearchRescorerBuilder sent = new ShopsearchRescorerBuilder("cordless drill", true, "v7", rescorer);
        XContentBuilder json = JsonXContent.contentBuilder();
        sent.toXContent(json, ToXContent.EMPTY_PARAMS);  // {"shopsearch": {...}}
        String text = Strings.toString(json);
        String body = text.substring(text.indexOf("\"shopsearch\":") + "\"shopsearch\":".length(), text.length() - 1);
        assertEquals(sent, parse(body));
    }

    @Test
    public void theBuiltContextCarriesThePluginsRescorer() throws IOException {
        ShopsearchRescorer.Context ctx = (ShopsearchRescorer.Context) parse("{\"query_text\": \"drill\"}").innerBuildContext(30, null);
        assertSame(rescorer, ctx.rescorer());
        assertEquals(30, ctx.getWindowSize());
        assertEquals("drill", ctx.queryText);
    }
}
