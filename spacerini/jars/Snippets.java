/*
 * Where a BM25 snippet's query terms are: the analyzer runs in Java (outside Python's GIL) and
 * only the matching tokens' character offsets cross JNI. Built into spacerini-helpers.jar.
 */
package io.spacerini;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Locale;
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
    Hits hits = new Hits(terms, Integer.MAX_VALUE);
    hits.analyze(analyzer, text, 0);
    return hits.offsets();
  }

  /**
   * {@link #matches(Analyzer, String, String[])} of an ASCII text passed as its bytes (JNI copies
   * a byte array several times faster than it makes a String of a Python str). With {@code
   * prefixes} (lowercase strings, one of which begins every token, lowercased, whose term is
   * wanted), only the runs of non-blank characters that contain one, ignoring case, are analyzed:
   * ASCII blanks and controls (every character up to U+0020) always end a token, so such a run is
   * tokenized alone as within the whole text, and the offsets are the same.
   */
  public static int[] matchesAscii(Analyzer analyzer, byte[] ascii, String[] terms, String[] prefixes)
      throws IOException {
    String text = new String(ascii, StandardCharsets.ISO_8859_1);
    if (prefixes == null) {
      return matches(analyzer, text, terms);
    }
    Hits hits = new Hits(terms, Integer.MAX_VALUE);
    scan(analyzer, text, prefixes, hits);
    return hits.offsets();
  }

  /**
   * The offsets {start, end} of the first match of {@link #matchesAscii} with {@code prefixes}, or
   * an empty array when there is none (analysis stops at the first match).
   */
  public static int[] firstMatchAscii(Analyzer analyzer, byte[] ascii, String[] terms, String[] prefixes)
      throws IOException {
    String text = new String(ascii, StandardCharsets.ISO_8859_1);
    Hits hits = new Hits(terms, 1);
    scan(analyzer, text, prefixes, hits);
    return hits.offsets();
  }

  /** Analyzes the candidate runs of {@code text} (see {@link #matchesAscii}) in order. */
  private static void scan(Analyzer analyzer, String text, String[] prefixes, Hits hits)
      throws IOException {
    int length = text.length();
    String lower = text.toLowerCase(Locale.ROOT);
    boolean[] wanted = new boolean[length + 1];
    boolean any = false;
    for (String prefix : prefixes) {
      if (prefix.isEmpty()) {
        hits.analyze(analyzer, text, 0);
        return;
      }
      for (int at = lower.indexOf(prefix); at >= 0; at = lower.indexOf(prefix, at + 1)) {
        wanted[at] = true;
        any = true;
      }
    }
    if (!any) {
      return;
    }
    // Runs of non-blank characters holding a prefix, joined when only a few characters lie
    // between them (one analysis instead of several), each analyzed alone at its offset.
    int runStart = -1;
    int runEnd = -1;
    int i = 0;
    while (i < length && !hits.full()) {
      if (text.charAt(i) <= ' ') {
        i++;
        continue;
      }
      int start = i;
      boolean holds = false;
      while (i < length && text.charAt(i) > ' ') {
        holds |= wanted[i];
        i++;
      }
      if (!holds) {
        continue;
      }
      if (runStart >= 0 && start - runEnd > GAP) {
        hits.analyze(analyzer, text.substring(runStart, runEnd), runStart);
        runStart = -1;
      }
      if (runStart < 0) {
        runStart = start;
      }
      runEnd = i;
    }
    if (runStart >= 0 && !hits.full()) {
      hits.analyze(analyzer, text.substring(runStart, runEnd), runStart);
    }
  }

  /** Runs of wanted words closer than this many characters are analyzed together. */
  private static final int GAP = 24;

  /** The wanted terms and the offsets found so far (at most {@code max} matches). */
  private static final class Hits {
    private final Set<String> wanted;
    private final int max;
    private int[] out = new int[16];
    private int n;

    Hits(String[] terms, int max) {
      wanted = new HashSet<>(Arrays.asList(terms));
      this.max = max;
    }

    boolean full() {
      return n / 2 >= max;
    }

    void analyze(Analyzer analyzer, String text, int base) throws IOException {
      try (TokenStream stream = analyzer.tokenStream("contents", text)) {
        CharTermAttribute term = stream.addAttribute(CharTermAttribute.class);
        OffsetAttribute offset = stream.addAttribute(OffsetAttribute.class);
        stream.reset();
        while (!full() && stream.incrementToken()) {
          if (wanted.contains(term.toString())) {
            if (n + 2 > out.length) {
              out = Arrays.copyOf(out, out.length * 2);
            }
            out[n++] = base + offset.startOffset();
            out[n++] = base + offset.endOffset();
          }
        }
        stream.end();
      }
    }

    int[] offsets() {
      return Arrays.copyOf(out, n);
    }
  }
}
