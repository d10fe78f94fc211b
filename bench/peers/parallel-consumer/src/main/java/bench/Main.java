package bench;

import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * S3 peer: Confluent parallel-consumer with KEY ordering and maxConcurrency, a handler that sleeps
 * for the handler time. The backlog (the input topic) is timed from the first record handled to the
 * last backlog record handled; then it prints BACKLOG-DONE, the harness produces the live records to
 * the live topic, and their latency is handler end minus record timestamp.
 * Prints one JSON line at the end.
 */
public final class Main {
  public static void main(String[] args) throws Exception {
    String brokers = prop("bench.brokers");
    String topic = prop("bench.topic");
    String group = prop("bench.group");
    int backlog = Integer.parseInt(prop("bench.backlog"));
    int live = Integer.parseInt(prop("bench.live"));
    int concurrency = Integer.parseInt(prop("bench.concurrency"));
    long handlerMs = Long.parseLong(prop("bench.handlerMs"));
    String liveTopic = live > 0 ? prop("bench.liveTopic") : "";

    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false"); // required by parallel-consumer
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    KafkaConsumer<String, byte[]> kc =
        new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
    ParallelConsumerOptions<String, byte[]> opts =
        ParallelConsumerOptions.<String, byte[]>builder()
            .ordering(ProcessingOrder.KEY)
            .maxConcurrency(concurrency)
            .consumer(kc)
            .commitMode(ParallelConsumerOptions.CommitMode.PERIODIC_CONSUMER_ASYNCHRONOUS)
            .build();
    ParallelStreamProcessor<String, byte[]> pc = ParallelStreamProcessor.createEosStreamProcessor(opts);

    AtomicLong first = new AtomicLong();
    AtomicInteger backlogDone = new AtomicInteger();
    AtomicInteger liveDone = new AtomicInteger();
    AtomicInteger violations = new AtomicInteger();
    ConcurrentHashMap<String, Long> lastOffset = new ConcurrentHashMap<>();
    AtomicLongArray lat = new AtomicLongArray(Math.max(live, 1));
    AtomicLong backlogEnd = new AtomicLong();
    CountDownLatch backlogLatch = new CountDownLatch(1);
    CountDownLatch liveLatch = new CountDownLatch(1);

    pc.subscribe(live > 0 ? List.of(topic, liveTopic) : List.of(topic));
    pc.poll(ctx -> {
      ConsumerRecord<String, byte[]> r = ctx.getSingleConsumerRecord();
      first.compareAndSet(0, System.nanoTime());
      try {
        Thread.sleep(handlerMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new RuntimeException(e);
      }
      Long prev = lastOffset.put(r.topic() + "/" + r.partition() + "/" + r.key(), r.offset());
      if (prev != null && prev >= r.offset()) {
        violations.incrementAndGet();
      }
      if (r.topic().equals(liveTopic)) {
        long ms = System.currentTimeMillis() - r.timestamp();
        int i = liveDone.getAndIncrement();
        if (i < lat.length()) {
          lat.set(i, ms);
        }
        if (i + 1 == live) {
          liveLatch.countDown();
        }
      } else if (backlogDone.incrementAndGet() == backlog) {
        backlogEnd.set(System.nanoTime());
        backlogLatch.countDown();
      }
    });
    backlogLatch.await();
    System.out.println("BACKLOG-DONE");
    System.out.flush();
    if (live > 0) {
      liveLatch.await();
    }
    double seconds = (backlogEnd.get() - first.get()) / 1e9;
    long[] l = new long[live];
    for (int i = 0; i < live; i++) {
      l[i] = lat.get(i);
    }
    Arrays.sort(l);
    String p50 = live > 0 ? Long.toString(l[(int) (live * 0.50)]) : "null";
    String p99 = live > 0 ? Long.toString(l[Math.min(live - 1, (int) (live * 0.99))]) : "null";
    System.out.printf(
        "{\"records\":%d,\"seconds\":%.6f,\"p50_ms\":%s,\"p99_ms\":%s,\"peak_rss_kb\":%d,\"extra\":{\"order_violations\":%d}}%n",
        backlog, seconds, p50, p99, vmHWM(), violations.get());
    System.out.flush();
    Runtime.getRuntime().halt(0); // the result is out; closing the consumer is not what is measured
  }

  /** Peak resident set size of this JVM, in kB (VmHWM of /proc/self/status), or 0. */
  static long vmHWM() {
    try {
      for (String l : java.nio.file.Files.readAllLines(java.nio.file.Paths.get("/proc/self/status"))) {
        if (l.startsWith("VmHWM:")) {
          return Long.parseLong(l.substring(6).replace("kB", "").trim());
        }
      }
    } catch (java.io.IOException | NumberFormatException e) {
      return 0;
    }
    return 0;
  }

  static String prop(String k) {
    String v = System.getProperty(k);
    if (v == null || v.isEmpty()) {
      System.err.println("missing -D" + k);
      System.exit(2);
    }
    return v;
  }
}
