package bench;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.core.ConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.listener.ContainerProperties.AckMode;

/**
 * S6 peer: Spring Kafka's batch listener (a @KafkaListener taking the List of records of one poll,
 * AckMode.BATCH: the poll's offsets are committed once the listener returns), without Spring Boot,
 * calling a simulated bulk insert once per poll: it sleeps bench.callNs and then busy-spins
 * bench.recordNs per record, as the Go contenders' sink does (bench/batch.go). Timed from the
 * first sink call's start until the sink call of the last backlog record (the records below the
 * end offsets listed at start) returned. Then it prints BACKLOG-DONE, and the harness produces
 * bench.live records to bench.liveTopic, whose latency is the time their sink call returned minus
 * their produce timestamp. Prints one JSON line.
 */
@Configuration
@EnableKafka
public class Main {
  static final AtomicLong first = new AtomicLong();
  static final AtomicLong last = new AtomicLong();
  static final AtomicLong backlogCalls = new AtomicLong();
  static final Map<Integer, Long> lastOffset = new HashMap<>(); // per partition of the topic; read-only once running
  static final Set<Integer> finished = ConcurrentHashMap.newKeySet();
  static final ConcurrentLinkedQueue<Long> latency = new ConcurrentLinkedQueue<>();
  static final CountDownLatch backlogDone = new CountDownLatch(1);
  static CountDownLatch liveDone;
  static String topic;
  static String liveTopic;
  static long backlog;
  static long callNanos;
  static long recordNanos;

  public static void main(String[] args) throws Exception {
    Logger.getLogger("").setLevel(Level.WARNING);
    topic = prop("bench.topic");
    prop("bench.brokers");
    prop("bench.group");
    prop("bench.concurrency");
    callNanos = Long.parseLong(prop("bench.callNs"));
    recordNanos = Long.parseLong(prop("bench.recordNs"));
    int live = Integer.parseInt(prop("bench.live"));
    liveTopic = System.getProperty("bench.liveTopic", "");
    if (live > 0 && liveTopic.isEmpty()) {
      System.err.println("bench.live needs -Dbench.liveTopic");
      System.exit(2);
    }
    liveDone = new CountDownLatch(live);
    listEndOffsets();
    try (AnnotationConfigApplicationContext ctx = new AnnotationConfigApplicationContext(Main.class)) {
      backlogDone.await();
      System.out.println("BACKLOG-DONE");
      System.out.flush();
      liveDone.await();
      double seconds = (last.get() - first.get()) / 1e9;
      long[] l = latency.stream().mapToLong(Long::longValue).sorted().toArray();
      String p50 = l.length > 0 ? String.valueOf(l[l.length / 2]) : "null";
      String p99 = l.length > 0 ? String.valueOf(l[Math.min(l.length - 1, l.length * 99 / 100)]) : "null";
      long calls = backlogCalls.get();
      System.out.printf(
          "{\"records\":%d,\"seconds\":%.6f,\"p50_ms\":%s,\"p99_ms\":%s,\"peak_rss_kb\":%d,\"extra\":{\"backlog_calls\":%d,\"records_per_call\":%d}}%n",
          backlog, seconds, p50, p99, vmHWM(), calls, backlog / Math.max(1, calls));
      System.out.flush();
      Runtime.getRuntime().halt(0); // the result is out; closing the containers is not what is measured
    }
  }

  /** The backlog: each partition's last offset below its end offset at start. */
  static void listEndOffsets() {
    Map<String, Object> p = new HashMap<>();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, System.getProperty("bench.brokers"));
    try (KafkaConsumer<byte[], byte[]> c =
        new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> tps = new ArrayList<>();
      for (PartitionInfo pi : c.partitionsFor(topic)) {
        tps.add(new TopicPartition(topic, pi.partition()));
      }
      c.endOffsets(tps).forEach((tp, end) -> {
        if (end > 0) {
          lastOffset.put(tp.partition(), end - 1);
          backlog += end;
        }
      });
    }
  }

  /** The simulated bulk insert of n records: the call's cost slept, n records' cost spun. */
  static void sink(int n) throws InterruptedException {
    Thread.sleep(callNanos / 1_000_000, (int) (callNanos % 1_000_000));
    long end = System.nanoTime() + n * recordNanos;
    while (System.nanoTime() < end) {
      // spin: the per-record cost is CPU work, as building the rows is
    }
  }

  /** The topics the listener subscribes to: the input topic and, if there is one, the live topic. */
  public static String[] topics() {
    return liveTopic.isEmpty() ? new String[] {topic} : new String[] {topic, liveTopic};
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

  @Bean
  public ConsumerFactory<byte[], byte[]> consumerFactory() {
    Map<String, Object> p = new HashMap<>();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, System.getProperty("bench.brokers"));
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    return new DefaultKafkaConsumerFactory<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
  }

  @Bean
  public ConcurrentKafkaListenerContainerFactory<byte[], byte[]> kafkaListenerContainerFactory(
      ConsumerFactory<byte[], byte[]> cf) {
    ConcurrentKafkaListenerContainerFactory<byte[], byte[]> f = new ConcurrentKafkaListenerContainerFactory<>();
    f.setConsumerFactory(cf);
    f.setBatchListener(true);
    f.getContainerProperties().setAckMode(AckMode.BATCH);
    // One consumer per partition, as whippet runs one worker per partition.
    f.setConcurrency(Integer.parseInt(System.getProperty("bench.concurrency")));
    return f;
  }

  @Bean
  public Listener listener() {
    return new Listener();
  }

  /** The handler under test: one sink call per poll. */
  public static class Listener {
    @KafkaListener(topics = "#{T(bench.Main).topics()}", groupId = "${bench.group}")
    public void on(List<ConsumerRecord<byte[], byte[]>> recs) throws InterruptedException {
      first.compareAndSet(0, System.nanoTime());
      sink(recs.size());
      long now = System.nanoTime();
      long nowMs = System.currentTimeMillis();
      boolean anyBacklog = false;
      for (ConsumerRecord<byte[], byte[]> r : recs) {
        if (r.topic().equals(liveTopic)) {
          latency.add(nowMs - r.timestamp());
          liveDone.countDown();
          continue;
        }
        anyBacklog = true;
        Long lo = lastOffset.get(r.partition());
        if (lo != null && r.offset() == lo && finished.add(r.partition())) {
          last.accumulateAndGet(now, Math::max);
          if (finished.size() == lastOffset.size()) {
            backlogDone.countDown();
          }
        }
      }
      if (anyBacklog) {
        backlogCalls.incrementAndGet();
      }
    }
  }
}
