/*
 * Where a BM25 snippet's query terms are: the analyzer runs in Java (outside Python's GIL) and
 * only the matching tokens' character offsets cross JNI. Built into spacerini-helpers.jar.
 */
package io.spacerini;

import java.io.IOException;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.OffsetAttribute;

/** Finds the tokens of a text whose analyzed term is one of a query's terms. */
public final class Snippets {
  private Snippets() {}

  /**
   * Returns the start and end offsets (UTF-16 code units) of each token of {@code text} whose
   * term, after {@code analyzer}, is in {@code terms}: {start0, end0, start1, end1, ...}.
   */
  public static int[] matches(Analyzer analyzer, String text, String[] terms) throws IOException {
    Set<String> wanted = new HashSet<>(Arrays.asList(terms));
    int[] out = new int[16];
    int n = 0;
    try (TokenStream stream = analyzer.tokenStream("contents", text)) {
      CharTermAttribute term = stream.addAttribute(CharTermAttribute.class);
      OffsetAttribute offset = stream.addAttribute(OffsetAttribute.class);
      stream.reset();
      while (stream.incrementToken()) {
        if (wanted.contains(term.toString())) {
          if (n + 2 > out.length) {
            out = Arrays.copyOf(out, out.length * 2);
          }
          out[n++] = offset.startOffset();
          out[n++] = offset.endOffset();
        }
      }
      stream.end();
    }
    return Arrays.copyOf(out, n);
  }
}
