/*
 * Builds the Anserini index of a bundle from documents that Python streams into this process's
 * standard input (see main), while Python goes on reading the corpus and writing the docstore. The index is what Anserini's
 * IndexCollection (1.7.1, JsonCollection, DefaultLuceneDocumentGenerator) writes for JSON lines
 * {"id", "contents"}: the same fields, field types, analyzer and IndexWriter settings.
 * Built into spacerini-helpers.jar.
 */
package io.spacerini;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import io.anserini.analysis.AnalyzerMap;
import io.anserini.analysis.DefaultEnglishAnalyzer;
import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.core.WhitespaceAnalyzer;
import org.apache.lucene.document.BinaryDocValuesField;
import org.apache.lucene.document.Document;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.FieldType;
import org.apache.lucene.document.StoredField;
import org.apache.lucene.document.StringField;
import org.apache.lucene.index.ConcurrentMergeScheduler;
import org.apache.lucene.index.DirectoryReader;
import org.apache.lucene.index.IndexOptions;
import org.apache.lucene.index.IndexWriter;
import org.apache.lucene.index.IndexWriterConfig;
import org.apache.lucene.search.CollectionStatistics;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.similarities.BM25Similarity;
import org.apache.lucene.store.Directory;
import org.apache.lucene.store.FSDirectory;
import org.apache.lucene.store.FilterDirectory;
import org.apache.lucene.store.IOContext;
import org.apache.lucene.store.IndexOutput;
import org.apache.lucene.util.BytesRef;

/**
 * Indexes records read from a stream: each is {@code int32 idBytes, int32 contentsBytes} (big
 * endian) then the UTF-8 bytes of the id and of the contents.
 *
 * <p>One reader thread cuts the stream into batches; {@code threads} workers index them from one
 * queue, so no worker waits while another still has a file of its own to finish (Anserini gives
 * each thread whole files). When the stream ends, each worker flushes its in-memory segment
 * itself, in parallel, instead of leaving every segment to the single thread that commits.
 */
public final class StreamIndexer {
  /**
   * Batches stay small (64 KiB): the documents waiting in the queue are alive at every young
   * collection, and with 1 MiB batches (up to 7 MiB in flight) they overflowed the serial
   * collector's survivor space into the old generation, where they died as garbage that grew the
   * heap: 448 MB of heap after the last young collection on the Python corpus against
   * IndexCollection's 324 MB, peak RSS 600 MB against 465 MB; with 64 KiB batches 329 MB and 496
   * MB.
   */
  private static final int BATCH_BYTES = 1 << 16;

  private static final int BATCH_DOCS = 256;
  private static final Batch END = new Batch();
  /** The id length that ends the stream: what came before it is to be committed. */
  private static final int END_MARKER = -1;

  private static final class Batch {
    final List<byte[]> ids = new ArrayList<>();
    final List<byte[]> contents = new ArrayList<>();
  }

  private final IndexWriter writer;
  private final HashingDirectory directory;
  private final InputStream input;
  private final BlockingQueue<Batch> queue;
  private final FieldType contentsType;
  private final boolean storeRaw;
  private final Thread reader;
  private final List<Thread> workers = new ArrayList<>();
  private final AtomicLong indexed = new AtomicLong();
  private final AtomicLong empty = new AtomicLong();
  private final AtomicLong errors = new AtomicLong();
  private final List<String> failedIds = new ArrayList<>();
  private volatile Throwable failure;

  /**
   * Opens the index writer (IndexCollection's settings) and starts the reader and the workers.
   *
   * @param indexDir the index folder (created)
   * @param analyzer the analyzer IndexCollection would use for these options
   * @param input the stream to read (the child process's standard input)
   * @param threads indexing threads
   * @param memoryBufferMb Lucene's RAM buffer (IndexCollection's {@code -memoryBuffer})
   */
  public StreamIndexer(
      String indexDir,
      Analyzer analyzer,
      InputStream input,
      int threads,
      int memoryBufferMb,
      boolean storePositions,
      boolean storeDocvectors,
      boolean storeRaw)
      throws IOException {
    IndexWriterConfig config = new IndexWriterConfig(analyzer);
    config.setSimilarity(new BM25Similarity());
    config.setOpenMode(IndexWriterConfig.OpenMode.CREATE);
    config.setRAMBufferSizeMB(memoryBufferMb);
    config.setUseCompoundFile(false);
    config.setMergeScheduler(new ConcurrentMergeScheduler());
    this.directory = new HashingDirectory(FSDirectory.open(Path.of(indexDir)));
    this.writer = new IndexWriter(directory, config);
    FieldType type = new FieldType();
    type.setStored(false);
    if (storeDocvectors) {
      type.setStoreTermVectors(true);
      type.setStoreTermVectorPositions(true);
    }
    type.setIndexOptions(
        storePositions ? IndexOptions.DOCS_AND_FREQS_AND_POSITIONS : IndexOptions.DOCS_AND_FREQS);
    type.freeze();
    this.contentsType = type;
    this.storeRaw = storeRaw;
    this.input = input;
    this.queue = new ArrayBlockingQueue<>(2 * threads);
    this.reader = new Thread(this::readAll, "spacerini-index-reader");
    reader.setDaemon(true);
    for (int i = 0; i < threads; i++) {
      Thread worker = new Thread(this::work, "spacerini-index-" + i);
      worker.setDaemon(true);
      workers.add(worker);
    }
    reader.start();
    for (Thread worker : workers) {
      worker.start();
    }
  }

  /**
   * Halts this process once the process that started it is gone. A Ray worker that is cancelled
   * or stopped by its memory watchdog dies outright, and its build's clean-up deletes the folder
   * this process writes into; a process still starting would otherwise create the folder again
   * when it opens the index (the end of standard input says the same, but only once read).
   * {@code SPACERINI_PARENT_PID} names the parent, so that one already gone when this JVM has
   * started is seen too.
   */
  static void haltWithParent() {
    String given = System.getenv("SPACERINI_PARENT_PID");
    if (given == null || given.isEmpty()) {
      return;
    }
    long parent = Long.parseLong(given);
    long now = currentParent();
    if (now == -1) {
      return; // this platform does not tell a process its parent: no watch
    }
    if (now != parent) {
      Runtime.getRuntime().halt(3);
    }
    Thread watch =
        new Thread(
            () -> {
              try {
                while (currentParent() == parent) {
                  Thread.sleep(100);
                }
              } catch (InterruptedException stop) {
                return;
              }
              Runtime.getRuntime().halt(3);
            },
            "spacerini-parent-watch");
    watch.setDaemon(true);
    watch.start();
  }

  private static long currentParent() {
    return ProcessHandle.current().parent().map(ProcessHandle::pid).orElse(-1L);
  }

  /**
   * Indexes a document stream in a JVM of its own: Spacerini's {@code BM25Writer} starts this
   * process and writes the documents into its standard input, so the JVM starts and indexes
   * beside the Python process instead of inside it (no interpreter lock held while Java starts,
   * no JNI per batch). Ends with the end marker (an id length of -1); a stream that ends without
   * it (the writer died) commits nothing.
   *
   * <p>Arguments: {@code INDEX_DIR THREADS MEMORY_BUFFER_MB LANGUAGE PRETOKENIZED DUMP_DIR}. Lines
   * on standard output, tab-separated, each after the tag {@code spacerini}: {@code ready} (the analyzer and writer are open), {@code
   * progress N} (twice a second), then {@code counts INDEXED EMPTY ERRORS MAXDOC}, {@code failed
   * HEX_UTF8_ID} (up to five), {@code sum NAME SIZE SHA256} (every index file, hashed while
   * written), {@code dump TERMS POSTINGS IDS MAXDOC DOC_COUNT SUM_TOTAL_TERM_FREQ} or {@code dump
   * none} (the postings of {@code contents} written to DUMP_DIR by {@link PostingsDump}, with
   * {@code logs.f8}: pairs {@code x, Math.log(x)} for the idf argument of each distinct document
   * frequency), and {@code done}. A failure prints {@code spacerini-error MESSAGE} on standard error
   * and exits 1.
   */
  public static void main(String[] args) {
    try {
      haltWithParent();
      if (args.length != 6) {
        throw new IllegalArgumentException(
            "usage: StreamIndexer INDEX_DIR THREADS MEMORY_BUFFER_MB LANGUAGE PRETOKENIZED DUMP_DIR");
      }
      String indexDir = args[0];
      Analyzer analyzer = analyzer(args[3], Boolean.parseBoolean(args[4]));
      StreamIndexer indexer =
          new StreamIndexer(
              indexDir,
              analyzer,
              new FileInputStream(FileDescriptor.in),
              Integer.parseInt(args[1]),
              Integer.parseInt(args[2]),
              true,
              true,
              true);
      say("ready");
      Thread progress =
          new Thread(
              () -> {
                try {
                  while (true) {
                    Thread.sleep(500);
                    say("progress\t" + indexer.indexed());
                  }
                } catch (InterruptedException stop) {
                  // finished
                }
              },
              "spacerini-index-progress");
      progress.setDaemon(true);
      progress.start();
      long[] counts = indexer.finish();
      progress.interrupt();
      progress.join();
      say("counts\t" + counts[0] + "\t" + counts[1] + "\t" + counts[2] + "\t" + counts[3]);
      for (String id : indexer.failedIds()) {
        say("failed\t" + HexFormat.of().formatHex(id.getBytes(StandardCharsets.UTF_8)));
      }
      for (String line : indexer.checksums()) {
        say("sum\t" + line);
      }
      // The writer is closed: its indexing buffers are garbage. Give the heap back before the
      // dump, or the dump's first full collection (class metadata) keeps the grown heap and the
      // dump's allocations touch a young generation sized to it (peak RSS on the Python corpus,
      // three runs each: 504/580/578 MB without, 471/465/602 with; each collection ~10-60 ms).
      // One collection is enough: the JVM runs with -XX:-ShrinkHeapInSteps (spacerini.java.jvm_options).
      System.gc();
      try (DirectoryReader reader = DirectoryReader.open(FSDirectory.open(Path.of(indexDir)))) {
        long[] dump = PostingsDump.dump(reader, "contents", "id", args[5]);
        CollectionStatistics stats = new IndexSearcher(reader).collectionStatistics("contents");
        long docCount = stats == null ? 0 : stats.docCount();
        long sumTotalTermFreq = stats == null ? 0 : stats.sumTotalTermFreq();
        if (dump == null) {
          say("dump\tnone");
        } else {
          writeLogs(Path.of(args[5]), docCount);
          say("dump\t" + dump[0] + "\t" + dump[1] + "\t" + dump[2] + "\t" + dump[3] + "\t" + docCount + "\t"
              + sumTotalTermFreq);
        }
      }
      say("done");
      System.out.flush();
      System.exit(0);
    } catch (Throwable t) {
      String message = t.getMessage() == null ? t.toString() : t.getMessage();
      System.err.println("spacerini-error\t" + message.replace('\n', ' '));
      System.err.flush();
      System.exit(1);
    }
  }

  /** One protocol line, tagged so that the reader can tell it from anything a library prints. */
  private static synchronized void say(String line) {
    System.out.println("spacerini\t" + line);
    System.out.flush();
  }

  /** The analyzer IndexCollection (1.7.1) uses for these options (see lucene.make_analyzer). */
  private static Analyzer analyzer(String language, boolean pretokenized) throws IOException {
    if (pretokenized) {
      return new WhitespaceAnalyzer();
    }
    if (language.equals("en")) {
      return DefaultEnglishAnalyzer.fromArguments("porter", false, null);
    }
    if (!AnalyzerMap.analyzerMap.containsKey(language)) {
      List<String> known = new ArrayList<>(AnalyzerMap.analyzerMap.keySet());
      java.util.Collections.sort(known);
      throw new IllegalArgumentException(
          "unknown analyzer language '" + language + "': use en, code or one of " + String.join(", ", known));
    }
    return AnalyzerMap.getLanguageSpecificAnalyzer(language);
  }

  /** BM25Similarity's idf argument and its Math.log for each distinct df of the dump. */
  private static void writeLogs(Path dir, long docCount) throws IOException {
    java.util.TreeSet<Integer> dfs = new java.util.TreeSet<>();
    java.nio.IntBuffer written =
        java.nio.ByteBuffer.wrap(java.nio.file.Files.readAllBytes(dir.resolve("dfs.i4")))
            .order(java.nio.ByteOrder.LITTLE_ENDIAN)
            .asIntBuffer(); // PostingsDump writes little-endian
    while (written.hasRemaining()) {
      dfs.add(written.get());
    }
    try (java.io.DataOutputStream out =
        new java.io.DataOutputStream(
            new java.io.BufferedOutputStream(new java.io.FileOutputStream(dir.resolve("logs.f8").toFile())))) {
      for (int df : dfs) {
        double x = 1 + (docCount - df + 0.5D) / (df + 0.5D);
        out.writeDouble(x);
        out.writeDouble(Math.log(x));
      }
    }
  }

  private void fail(Throwable t) {
    synchronized (this) {
      if (failure == null) {
        failure = t;
      }
    }
    try {
      input.close(); // the writer's next write fails (broken pipe) instead of blocking
    } catch (IOException ignored) {
      // closing is best effort
    }
  }

  private void readAll() {
    try (DataInputStream in = new DataInputStream(new BufferedInputStream(input, 1 << 20))) {
      Batch batch = new Batch();
      int bytes = 0;
      while (failure == null) {
        int idLength;
        try {
          idLength = in.readInt();
        } catch (EOFException end) {
          // The writer went away without saying it was done (it crashed or was killed): nothing
          // of this index may be committed.
          throw new IOException("the document stream ended without its end marker");
        }
        if (idLength == END_MARKER) {
          break;
        }
        int length = in.readInt();
        byte[] id = new byte[idLength];
        byte[] contents = new byte[length];
        in.readFully(id);
        in.readFully(contents);
        batch.ids.add(id);
        batch.contents.add(contents);
        bytes += idLength + length;
        if (bytes >= BATCH_BYTES || batch.ids.size() >= BATCH_DOCS) {
          hand(batch);
          batch = new Batch();
          bytes = 0;
        }
      }
      if (!batch.ids.isEmpty()) {
        hand(batch);
      }
    } catch (Throwable t) {
      fail(t);
    } finally {
      for (int i = 0; i < workers.size(); i++) {
        try {
          if (!offer(END)) {
            break; // no worker left to take it
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          break;
        }
      }
    }
  }

  /**
   * Puts {@code batch} on the queue, or throws when no worker is left to take it: a worker that
   * failed (its folder removed under it, say) stops taking batches, and a reader blocked on the
   * full queue would never read the end of the stream, so the process would outlive its parent.
   */
  private void hand(Batch batch) throws IOException, InterruptedException {
    if (!offer(batch)) {
      throw new IOException("the indexing threads stopped");
    }
  }

  /** Offers {@code batch} until a worker takes it; false once every worker has ended. */
  private boolean offer(Batch batch) throws InterruptedException {
    while (!queue.offer(batch, 200, TimeUnit.MILLISECONDS)) {
      boolean alive = false;
      for (Thread worker : workers) {
        alive |= worker.isAlive();
      }
      if (!alive) {
        return false;
      }
    }
    return true;
  }

  private void work() {
    try {
      while (true) {
        Batch batch = queue.take();
        if (batch == END) {
          break;
        }
        if (failure != null) {
          continue; // drain, so that the reader never blocks on a full queue
        }
        for (int i = 0; i < batch.ids.size(); i++) {
          String id = new String(batch.ids.get(i), StandardCharsets.UTF_8);
          String contents = new String(batch.contents.get(i), StandardCharsets.UTF_8);
          if (contents.trim().length() == 0) {
            empty.incrementAndGet(); // Anserini's EmptyDocumentException
            continue;
          }
          try {
            writer.addDocument(document(id, contents));
          } catch (IllegalArgumentException e) {
            errors.incrementAndGet(); // one document Lucene refuses; the caller names it
            synchronized (failedIds) {
              if (failedIds.size() < 5) {
                failedIds.add(id);
              }
            }
            continue;
          }
          indexed.incrementAndGet();
        }
      }
      if (failure == null) {
        writer.flushNextBuffer(); // this thread's segment, written while the others finish
      }
    } catch (Throwable t) {
      fail(t);
    }
  }

  /** The Lucene document of DefaultLuceneDocumentGenerator (Anserini 1.7.1) for this record. */
  private Document document(String id, String contents) {
    Document document = new Document();
    document.add(new StringField("id", id, Field.Store.YES));
    document.add(new BinaryDocValuesField("id", new BytesRef(id)));
    if (storeRaw) {
      // JsonCollection's raw(): the record's JSON tree, pretty-printed.
      ObjectNode node = JsonNodeFactory.instance.objectNode();
      node.put("id", id);
      node.put("contents", contents);
      document.add(new StoredField("raw", node.toPrettyString()));
    }
    document.add(new Field("contents", contents, contentsType));
    return document;
  }

  /** Documents indexed so far. */
  public long indexed() {
    return indexed.get();
  }

  /** Up to five ids of documents that Lucene refused. */
  public String[] failedIds() {
    synchronized (failedIds) {
      return failedIds.toArray(new String[0]);
    }
  }

  /**
   * Waits for the stream's end (the writer closed its end) and every worker, then commits.
   *
   * @return {indexed, empty, errors, maxDoc}
   * @throws Exception the first failure of a thread (the index is rolled back)
   */
  public long[] finish() throws Exception {
    reader.join();
    for (Thread worker : workers) {
      worker.join();
    }
    if (failure != null) {
      writer.rollback();
      if (failure instanceof Exception) {
        throw (Exception) failure;
      }
      throw new IOException(String.valueOf(failure));
    }
    long maxDoc = writer.getDocStats().maxDoc;
    writer.commit();
    writer.close();
    return new long[] {indexed.get(), empty.get(), errors.get(), maxDoc};
  }

  /**
   * The size and SHA-256 of every file of the committed index, hashed while Lucene wrote it (so
   * publishing the bundle need not read the index again): "name\tsize\tsha256" lines.
   */
  public String[] checksums() throws IOException {
    List<String> out = new ArrayList<>();
    for (String name : directory.listAll()) {
      String[] sum = directory.sums.get(name);
      if (sum != null) {
        out.add(name + "\t" + sum[0] + "\t" + sum[1]);
      }
    }
    return out.toArray(new String[0]);
  }

  /** A directory that SHA-256 hashes each file as it is written, and follows renames and deletes. */
  private static final class HashingDirectory extends FilterDirectory {
    final Map<String, String[]> sums = new ConcurrentHashMap<>();

    HashingDirectory(Directory in) {
      super(in);
    }

    @Override
    public IndexOutput createOutput(String name, IOContext context) throws IOException {
      sums.remove(name);
      return new HashingOutput(in.createOutput(name, context), sums);
    }

    @Override
    public IndexOutput createTempOutput(String prefix, String suffix, IOContext context)
        throws IOException {
      return new HashingOutput(in.createTempOutput(prefix, suffix, context), sums);
    }

    @Override
    public void rename(String source, String dest) throws IOException {
      in.rename(source, dest);
      String[] sum = sums.remove(source);
      if (sum != null) {
        sums.put(dest, sum);
      } else {
        sums.remove(dest);
      }
    }

    @Override
    public void deleteFile(String name) throws IOException {
      sums.remove(name);
      in.deleteFile(name);
    }
  }

  /** Writes through to Lucene's output and hashes the same bytes (batched in a small buffer). */
  private static final class HashingOutput extends IndexOutput {
    private final IndexOutput out;
    private final Map<String, String[]> sums;
    private final MessageDigest sha;
    private final byte[] buffer = new byte[8192];
    private int used;
    private boolean closed;

    HashingOutput(IndexOutput out, Map<String, String[]> sums) {
      super("sha256(" + out + ")", out.getName());
      this.out = out;
      this.sums = sums;
      try {
        this.sha = MessageDigest.getInstance("SHA-256");
      } catch (NoSuchAlgorithmException e) {
        throw new IllegalStateException(e);
      }
    }

    @Override
    public void writeByte(byte b) throws IOException {
      out.writeByte(b);
      if (used == buffer.length) {
        sha.update(buffer, 0, used);
        used = 0;
      }
      buffer[used++] = b;
    }

    @Override
    public void writeBytes(byte[] b, int offset, int length) throws IOException {
      out.writeBytes(b, offset, length);
      if (length <= buffer.length - used) {
        System.arraycopy(b, offset, buffer, used, length);
        used += length;
      } else {
        sha.update(buffer, 0, used);
        used = 0;
        sha.update(b, offset, length);
      }
    }

    @Override
    public long getFilePointer() {
      return out.getFilePointer();
    }

    @Override
    public long getChecksum() throws IOException {
      return out.getChecksum();
    }

    @Override
    public void close() throws IOException {
      if (closed) {
        return;
      }
      closed = true;
      long size = out.getFilePointer();
      out.close();
      sha.update(buffer, 0, used);
      sums.put(getName(), new String[] {Long.toString(size), HexFormat.of().formatHex(sha.digest())});
    }
  }
}
