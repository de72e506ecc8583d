package org.shopsearch.es;

import io.grpc.Status;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.core.TimeValue;
import org.elasticsearch.rest.RestStatus;
import org.junit.Test;

import java.util.Map;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

/** The node settings' validation and the names a failed call is counted and reported under. */
public class SettingsAndFallbackTests {
    private static Settings with(String key, String value) {
        return Settings.builder().put(key, value).build();
    }

    private static String refusal(org.elasticsearch.common.settings.Setting<?> setting, String value) {
        return assertThrows(IllegalArgumentException.class, () -> setting.get(with(setting.getKey(), value))).getMessage();
    }

    @Test
    public void theDefaultsAreTheDocumentedOnes() {
        assertEquals("127.0.0.1:50051", RerankSettings.TARGET.get(Settings.EMPTY));
        assertEquals(300, RerankSettings.DEADLINE.get(Settings.EMPTY).millis());
        assertEquals(100, (int) RerankSettings.MAX_WINDOW.get(Settings.EMPTY));
        assertEquals(3, (int) RerankSettings.RETRY_ATTEMPTS.get(Settings.EMPTY));
        assertEquals(20, RerankSettings.RETRY_BACKOFF.get(Settings.EMPTY).millis());
    }

    @Test
    @SuppressWarnings("unchecked")
    public void theRetryPolicyTakesItsBackoffFromTheSetting() {
        Map<String, Object> config = RerankerLink.serviceConfig("a:1,b:2", 3,
            RerankSettings.RETRY_BACKOFF.get(with(RerankSettings.RETRY_BACKOFF.getKey(), "30ms")));
        Map<String, Object> method = ((java.util.List<Map<String, Object>>) config.get("methodConfig")).get(0);
        Map<String, Object> retry = (Map<String, Object>) method.get("retryPolicy");
        assertEquals("0.030s", retry.get("initialBackoff"));
        assertEquals("0.300s", retry.get("maxBackoff"));
        assertEquals(3.0, retry.get("maxAttempts"));
        assertEquals(null, RerankerLink.serviceConfig("a:1", 1, TimeValue.timeValueMillis(20)).get("methodConfig"));
    }

    @Test
    public void everyTargetFormTheDocsNameIsAccepted() {
        for (String target : new String[] {"127.0.0.1:50051", "a:1,b:2", "ipv4:127.0.0.1:1,127.0.0.1:2", "ipv6:[::1]:50051",
            "dns:///reranker:50051", "localhost:65535"}) {
            assertEquals(target, RerankSettings.TARGET.get(with(RerankSettings.TARGET.getKey(), target)));
        }
    }

    @Test
    public void aBadTargetIsOneLineNamingWhatWasGiven() {
        assertTrue(refusal(RerankSettings.TARGET, "nowhere").contains(
            "shopsearch.rerank.target must be host:port, host:port,host:port... or dns:///name:port, got [nowhere]"));
        assertTrue(refusal(RerankSettings.TARGET, "h:70000").contains("with ports 1-65535, got [h:70000]"));
        assertTrue(refusal(RerankSettings.TARGET, "a:1,").contains("got [a:1,]"));
        assertTrue(refusal(RerankSettings.TARGET, "dns:///name").contains("got [dns:///name]"));
    }

    @Test
    public void numbersOutsideTheirBoundsAreRefused() {
        assertRefused(RerankSettings.MAX_WINDOW, "1001", "must be <= 1000");
        assertRefused(RerankSettings.MAX_WINDOW, "0", "must be >= 1");
        assertRefused(RerankSettings.RETRY_ATTEMPTS, "6", "must be <= 5");
        assertRefused(RerankSettings.RETRY_BACKOFF, "0ms", "must be >= [1ms]");
        assertRefused(RerankSettings.DEADLINE, "0ms", "must be >= [1ms]");
        assertRefused(RerankSettings.FAIL_ON_ERROR, "maybe", "only [true] or [false]");
    }

    private static void assertRefused(org.elasticsearch.common.settings.Setting<?> setting, String value, String words) {
        String message = refusal(setting, value);
        assertTrue(message, message.contains(words));
    }

    @Test
    public void everyFailedCallHasAFallbackReasonAndAStatus() {
        Map<Status.Code, String> reasons = Map.of(
            Status.Code.UNAVAILABLE, "unavailable", Status.Code.DEADLINE_EXCEEDED, "deadline_exceeded",
            Status.Code.RESOURCE_EXHAUSTED, "overloaded", Status.Code.INVALID_ARGUMENT, "refused",
            Status.Code.FAILED_PRECONDITION, "refused", Status.Code.INTERNAL, "error", Status.Code.UNKNOWN, "error");
        reasons.forEach((code, reason) -> assertEquals(code.name(), reason, ShopsearchRescorer.fallbackReason(code)));
        assertEquals(RestStatus.BAD_REQUEST, ShopsearchRescorer.failureStatus(Status.Code.INVALID_ARGUMENT));
        assertEquals(RestStatus.GATEWAY_TIMEOUT, ShopsearchRescorer.failureStatus(Status.Code.DEADLINE_EXCEEDED));
        assertEquals(RestStatus.BAD_GATEWAY, ShopsearchRescorer.failureStatus(Status.Code.UNAVAILABLE));
    }

    @Test
    public void outcomesAreKeptPerRescoreOfAReaderAndQueryAndBounded() {
        Outcomes outcomes = new Outcomes(3);
        Object reader = new Object();
        outcomes.put(reader, "drill", Map.of(1, Outcome.notReranked(2f, 1, 10, "", "unavailable", "")));
        assertEquals("unavailable", outcomes.get(reader, "drill", 1).reason());
        assertEquals(null, outcomes.get(reader, "drill", 2));
        assertEquals(null, outcomes.get(reader, "hammer", 1));
        assertEquals(null, outcomes.get(new Object(), "drill", 1));
        // the latest rescore of the same query on the same reader replaces the earlier one
        outcomes.put(reader, "drill", Map.of(1, Outcome.reranked(1f, 2f, 1, 1, 10, "v")));
        assertEquals(true, outcomes.get(reader, "drill", 1).reranked());
        assertEquals(1, outcomes.size());
        for (String query : new String[] {"saw", "nail", "tape"}) outcomes.put(reader, query, Map.of(1, Outcome.reranked(1f, 1f, 1, 1, 10, "v")));
        assertEquals(3, outcomes.size());
        assertEquals("the oldest rescore went first", null, outcomes.rescore(reader, "drill"));
        assertEquals(true, outcomes.get(reader, "tape", 1).reranked());
    }
}
