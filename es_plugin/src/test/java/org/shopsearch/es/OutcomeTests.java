package org.shopsearch.es;

import org.elasticsearch.common.ParsingException;
import org.elasticsearch.common.io.stream.BytesStreamOutput;
import org.elasticsearch.xcontent.XContentParser;
import org.elasticsearch.xcontent.XContentParserConfiguration;
import org.elasticsearch.xcontent.XContentType;
import org.junit.Test;

import java.io.IOException;
import java.util.Arrays;
import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;

/** The opt-in (`ext.shopsearch_outcome`) and the per-hit entry the fetch sub-phase writes. */
public class OutcomeTests {
    private static OutcomeSearchExt parse(String json) throws IOException {
        try (XContentParser parser = XContentType.JSON.xContent().createParser(XContentParserConfiguration.EMPTY, json)) {
            parser.nextToken();
            return OutcomeSearchExt.fromXContent(parser);
        }
    }

    @Test
    public void theOptInIsAnEmptyObject() throws IOException {
        assertEquals(new OutcomeSearchExt(), parse("{}"));
        for (String bad : new String[] {"true", "{\"x\": 1}", "[]"}) {
            assertEquals("[shopsearch_outcome] takes an empty object: {\"shopsearch_outcome\": {}}",
                assertThrows(bad, ParsingException.class, () -> parse(bad)).getMessage());
        }
        BytesStreamOutput out = new BytesStreamOutput();
        new OutcomeSearchExt().writeTo(out);
        assertEquals(new OutcomeSearchExt(), new OutcomeSearchExt(out.bytes().streamInput()));
    }

    @Test
    public void aRerankedHitCarriesItsModelAndBm25Parts() {
        Map<String, Object> m = OutcomeFetchSubPhase.asMap(Outcome.reranked(0.75f, 9.5f, 3, 1, 40, "v7"));
        assertEquals(Arrays.asList("reranked", "model_score", "model_rank", "bm25_score", "bm25_rank", "window", "model_version",
            "reason", "detail"), Arrays.asList(m.keySet().toArray()));
        assertEquals(true, m.get("reranked"));
        assertEquals(0.75f, m.get("model_score"));
        assertEquals(1, m.get("model_rank"));
        assertEquals(9.5f, m.get("bm25_score"));
        assertEquals(3, m.get("bm25_rank"));
        assertEquals(40, m.get("window"));
        assertEquals("v7", m.get("model_version"));
        assertNull(m.get("reason"));
    }

    @Test
    public void anotherHitCarriesItsReasonKeyAndNoModelScore() {
        Map<String, Object> m = OutcomeFetchSubPhase.asMap(Outcome.notReranked(2f, 7, 5, "v7", Outcome.UNSCORED, "1 unknown item"));
        assertEquals(false, m.get("reranked"));
        assertNull("no NaN in JSON", m.get("model_score"));
        assertNull(m.get("model_rank"));
        assertEquals("unscored", m.get("reason"));
        assertEquals("1 unknown item", m.get("detail"));
        assertEquals(Map.of("reranked", false, "reason", "not_kept"), OutcomeFetchSubPhase.asMap(null));
    }
}
