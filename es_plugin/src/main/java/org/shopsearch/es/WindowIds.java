package org.shopsearch.es;

import org.apache.lucene.index.DocValuesType;
import org.apache.lucene.index.FieldInfo;
import org.apache.lucene.index.LeafReader;
import org.apache.lucene.index.LeafReaderContext;
import org.apache.lucene.index.SortedDocValues;
import org.apache.lucene.index.SortedSetDocValues;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.util.BytesRef;

import java.io.IOException;
import java.util.List;

/**
 * The window's item ids from a keyword field's doc values (the node's shopsearch.rerank.id_field).
 *
 * Why: `_id` is a stored field, so reading it decompresses a stored-field block on the search path
 * (about 4 us a hit in the plugin bench); doc values are a column lookup. A segment without the
 * field's doc values, or a hit without a value, is left null: the caller reads its `_id` instead.
 */
final class WindowIds {
    private WindowIds() {}

    /**
     * Ids by window position, null where this field gives none. `byDoc` holds (doc id << 32 | window
     * position), sorted: each segment's doc values are read forward, as they must be.
     */
    static String[] read(IndexSearcher searcher, ScoreDoc[] docs, long[] byDoc, String field) throws IOException {
        String[] ids = new String[byDoc.length];
        if (field == null || field.isEmpty() || field.equals("_id")) return ids;
        List<LeafReaderContext> leaves = searcher.getIndexReader().leaves();
        int leafIndex = -1;
        LeafReaderContext leaf = null;
        SortedDocValues single = null;
        SortedSetDocValues multi = null;
        for (long packed : byDoc) {
            int position = (int) packed;
            int doc = docs[position].doc;
            if (leaf == null || doc >= leaf.docBase + leaf.reader().maxDoc()) {
                while (doc >= leaves.get(leafIndex + 1).docBase + leaves.get(leafIndex + 1).reader().maxDoc()) leafIndex++;
                leaf = leaves.get(++leafIndex);
                single = null;
                multi = null;
                LeafReader reader = leaf.reader();
                FieldInfo info = reader.getFieldInfos().fieldInfo(field);
                DocValuesType type = info == null ? DocValuesType.NONE : info.getDocValuesType();
                if (type == DocValuesType.SORTED) single = reader.getSortedDocValues(field);
                else if (type == DocValuesType.SORTED_SET) multi = reader.getSortedSetDocValues(field);
            }
            int local = doc - leaf.docBase;
            BytesRef value = null;
            if (single != null && single.advanceExact(local)) {
                value = single.lookupOrd(single.ordValue());
            } else if (multi != null && multi.advanceExact(local) && multi.docValueCount() == 1) {
                value = multi.lookupOrd(multi.nextOrd());
            }
            if (value != null) ids[position] = value.utf8ToString();
        }
        return ids;
    }
}
