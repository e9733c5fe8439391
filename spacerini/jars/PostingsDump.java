/*
 * Spacerini's one Java helper: dumps a Lucene field's postings to flat binary files in one pass,
 * so that the BM25 sidecar is built without a JNI call per document or per term.
 *
 * Build (needs a JDK >= 21; `make java` runs this):
 *   javac --release 21 -cp ANSERINI_FATJAR -d build spacerini/jars/PostingsDump.java
 *   jar --create --file spacerini/jars/spacerini-helpers.jar -C build .
 */
package io.spacerini;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.apache.lucene.index.IndexReader;
import org.apache.lucene.index.MultiBits;
import org.apache.lucene.index.MultiTerms;
import org.apache.lucene.index.PostingsEnum;
import org.apache.lucene.index.Terms;
import org.apache.lucene.index.TermsEnum;
import org.apache.lucene.search.DocIdSetIterator;
import org.apache.lucene.util.BytesRef;

/**
 * Writes postings as little-endian int32 arrays that numpy reads with dtype {@code <i4}, through
 * buffers of its own: a {@code DataOutputStream} took a locked call per byte (2.8 M postings on
 * Debian 100k, two arrays of them).
 */
public final class PostingsDump {
  private PostingsDump() {}

  /**
   * Dumps every term of {@code field} with its postings, in the terms dictionary's order (UTF-8
   * byte order), and the id of every document (from the postings of {@code idField}, whose terms
   * are document ids indexed once each).
   *
   * <p>Files written in {@code outDir}: {@code terms.bin} (the terms' bytes, concatenated), {@code
   * term_lens.i4} (each term's byte length), {@code dfs.i4} (each term's document count), {@code
   * docs.i4} and {@code tfs.i4} (the postings, term after term, Lucene docids ascending), {@code
   * ids.bin}, {@code id_lens.i4} and {@code id_docs.i4} (each id's bytes and its Lucene docid).
   *
   * @return {terms, postings, ids, maxDoc}; or null when the index has deleted documents
   *     (their postings linger until a merge, so the caller must read term vectors instead)
   */
  public static long[] dump(IndexReader reader, String field, String idField, String outDir)
      throws IOException {
    if (MultiBits.getLiveDocs(reader) != null) {
      return null;
    }
    Path dir = Path.of(outDir);
    long terms = 0;
    long postings = 0;
    try (Out termBytes = new Out(dir, "terms.bin");
        Out termLens = new Out(dir, "term_lens.i4");
        Out dfs = new Out(dir, "dfs.i4");
        Out docs = new Out(dir, "docs.i4");
        Out tfs = new Out(dir, "tfs.i4")) {
      Terms fieldTerms = MultiTerms.getTerms(reader, field);
      if (fieldTerms != null) {
        TermsEnum te = fieldTerms.iterator();
        PostingsEnum pe = null;
        BytesRef term;
        while ((term = te.next()) != null) {
          termBytes.write(term.bytes, term.offset, term.length);
          termLens.writeInt(term.length);
          pe = te.postings(pe, PostingsEnum.FREQS);
          int df = 0;
          for (int doc = pe.nextDoc(); doc != DocIdSetIterator.NO_MORE_DOCS; doc = pe.nextDoc()) {
            docs.writeInt(doc);
            tfs.writeInt(pe.freq());
            df++;
          }
          dfs.writeInt(df);
          terms++;
          postings += df;
        }
      }
    }
    long ids = 0;
    try (Out idBytes = new Out(dir, "ids.bin");
        Out idLens = new Out(dir, "id_lens.i4");
        Out idDocs = new Out(dir, "id_docs.i4")) {
      Terms idTerms = MultiTerms.getTerms(reader, idField);
      if (idTerms != null) {
        TermsEnum te = idTerms.iterator();
        PostingsEnum pe = null;
        BytesRef term;
        while ((term = te.next()) != null) {
          pe = te.postings(pe, PostingsEnum.NONE);
          for (int doc = pe.nextDoc(); doc != DocIdSetIterator.NO_MORE_DOCS; doc = pe.nextDoc()) {
            idBytes.write(term.bytes, term.offset, term.length);
            idLens.writeInt(term.length);
            idDocs.writeInt(doc);
            ids++;
          }
        }
      }
    }
    return new long[] {terms, postings, ids, reader.maxDoc()};
  }

  /** A file written through one 256 KiB little-endian buffer. */
  private static final class Out implements Closeable {
    private final FileChannel channel;
    private final ByteBuffer buffer = ByteBuffer.allocateDirect(1 << 18).order(ByteOrder.LITTLE_ENDIAN);

    Out(Path dir, String name) throws IOException {
      channel =
          FileChannel.open(
              dir.resolve(name),
              StandardOpenOption.CREATE,
              StandardOpenOption.TRUNCATE_EXISTING,
              StandardOpenOption.WRITE);
    }

    void writeInt(int value) throws IOException {
      if (buffer.remaining() < Integer.BYTES) {
        drain();
      }
      buffer.putInt(value);
    }

    void write(byte[] bytes, int offset, int length) throws IOException {
      while (length > 0) {
        if (!buffer.hasRemaining()) {
          drain();
        }
        int n = Math.min(length, buffer.remaining());
        buffer.put(bytes, offset, n);
        offset += n;
        length -= n;
      }
    }

    private void drain() throws IOException {
      buffer.flip();
      while (buffer.hasRemaining()) {
        channel.write(buffer);
      }
      buffer.clear();
    }

    @Override
    public void close() throws IOException {
      try {
        drain();
      } finally {
        channel.close();
      }
    }
  }
}
