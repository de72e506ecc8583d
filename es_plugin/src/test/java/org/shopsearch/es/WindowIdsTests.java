package org.shopsearch.es;

import org.apache.lucene.document.Document;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.SortedDocValuesField;
import org.apache.lucene.document.SortedSetDocValuesField;
import org.apache.lucene.document.StringField;
import org.apache.lucene.index.DirectoryReader;
import org.apache.lucene.index.IndexWriter;
import org.apache.lucene.index.IndexWriterConfig;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.store.ByteBuffersDirectory;
import org.apache.lucene.util.BytesRef;
import org.junit.Test;

import java.io.IOException;
import java.util.Arrays;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

public class WindowIdsTests {

    private static Document doc(String id, boolean single, String... values) {
        Document d = new Document();
        d.add(new StringField("name", id, Field.Store.YES));
        for (String v : values) {
            d.add(single ? new SortedDocValuesField("product_id", new BytesRef(v)) : new SortedSetDocValuesField("product_id", new BytesRef(v)));
        }
        return d;
    }

    /** Three segments: keyword doc values (sorted set, as Elasticsearch writes a keyword), one without the field, one more. */
    private static DirectoryReader threeSegments(ByteBuffersDirectory dir) throws IOException {
        try (IndexWriter w = new IndexWriter(dir, new IndexWriterConfig().setMergePolicy(org.apache.lucene.index.NoMergePolicy.INSTANCE))) {
            w.addDocument(doc("a", false, "p0"));
            w.addDocument(doc("b", false, "p1"));
            w.addDocument(doc("c", false, "p2", "p9"));  // two values: ambiguous, left to _id
            w.commit();
            w.addDocument(doc("d", false));
            w.addDocument(doc("e", false));
            w.commit();
            w.addDocument(doc("f", false, "p5"));
            w.commit();
        }
        return DirectoryReader.open(dir);
    }

    private static long[] byDoc(ScoreDoc[] docs) {
        long[] packed = new long[docs.length];
        for (int i = 0; i < docs.length; i++) packed[i] = ((long) docs[i].doc << 32) | i;
        Arrays.sort(packed);
        return packed;
    }

    @Test
    public void idsComeFromDocValuesInWindowOrderAcrossSegments() throws IOException {
        try (ByteBuffersDirectory dir = new ByteBuffersDirectory(); DirectoryReader reader = threeSegments(dir)) {
            assertEquals(3, reader.leaves().size());
            IndexSearcher searcher = new IndexSearcher(reader);
            // BM25 order is not doc order: the window reads forward by doc id and answers by position
            ScoreDoc[] window = {new ScoreDoc(5, 9f), new ScoreDoc(1, 8f), new ScoreDoc(3, 7f), new ScoreDoc(0, 6f), new ScoreDoc(2, 5f)};
            String[] ids = WindowIds.read(searcher, window, byDoc(window), "product_id");
            assertArrayEquals(new String[] {"p5", "p1", null, "p0", null}, ids);
        }
    }

    @Test
    public void singleValuedSortedDocValuesAreReadToo() throws IOException {
        try (ByteBuffersDirectory dir = new ByteBuffersDirectory()) {
            try (IndexWriter w = new IndexWriter(dir, new IndexWriterConfig())) {
                w.addDocument(doc("a", true, "p7"));
                w.addDocument(doc("b", true));
            }
            try (DirectoryReader reader = DirectoryReader.open(dir)) {
                ScoreDoc[] window = {new ScoreDoc(1, 2f), new ScoreDoc(0, 1f)};
                assertArrayEquals(new String[] {null, "p7"}, WindowIds.read(new IndexSearcher(reader), window, byDoc(window), "product_id"));
            }
        }
    }

    @Test
    public void theIdFieldSettingUnderscoreIdOrAMissingFieldReadsNothing() throws IOException {
        try (ByteBuffersDirectory dir = new ByteBuffersDirectory(); DirectoryReader reader = threeSegments(dir)) {
            IndexSearcher searcher = new IndexSearcher(reader);
            ScoreDoc[] window = {new ScoreDoc(0, 2f), new ScoreDoc(5, 1f)};
            assertArrayEquals(new String[2], WindowIds.read(searcher, window, byDoc(window), "_id"));
            assertArrayEquals(new String[2], WindowIds.read(searcher, window, byDoc(window), "sku"));
            assertArrayEquals(new String[2], WindowIds.read(searcher, window, byDoc(window), ""));
        }
    }
}
