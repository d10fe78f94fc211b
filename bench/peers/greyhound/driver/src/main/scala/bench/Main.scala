package bench

import java.nio.charset.StandardCharsets.UTF_8
import java.util.Properties
import java.util.concurrent.{ConcurrentHashMap, ConcurrentLinkedQueue, CountDownLatch}
import java.util.concurrent.atomic.{AtomicInteger, AtomicLong}

import scala.collection.JavaConverters._

import com.wixpress.dst.greyhound.core.consumer.{EventLoopConfig, OffsetReset, RecordConsumer, RecordConsumerConfig}
import com.wixpress.dst.greyhound.core.consumer.domain.{ConsumerRecord, ConsumerSubscription, RecordHandler}
import com.wixpress.dst.greyhound.core.consumer.retry.ZRetryConfig
import com.wixpress.dst.greyhound.core.metrics.GreyhoundMetrics
import org.apache.kafka.clients.consumer.{ConsumerConfig, KafkaConsumer}
import org.apache.kafka.common.serialization.ByteArrayDeserializer
import zio.{Chunk, Unsafe, ZIO, ZLayer}

/**
 * S1 and S2 peer: Greyhound's RecordConsumer (its ZIO API, core module), built from source.
 *
 * S1: plain consume with a no-op handler of the input topic and the live topic. Timed from the
 * first record handled to the last backlog record handled (the input topic's end offsets, listed
 * at start); then it prints BACKLOG-DONE, the harness produces the live records, and their latency
 * is handler call minus record timestamp.
 *
 * S2: Greyhound's non-blocking retries (ZRetryConfig.nonBlockingRetry, its own retry topic
 * "<topic>-<group>-retry-0"). Records whose key starts with 'f' fail on the input topic and
 * succeed on their retry. Timed from the first record handled until every record has been handled
 * successfully; the latency is each retried record's lateness: handled on the retry topic minus its
 * due time (first failure + retry delay).
 *
 * -Dbench.tuned=false runs Greyhound with its defaults (EventLoopConfig.Default: a partition is
 * paused once 256 of its records wait in the dispatcher, and resumed at 128); true raises those
 * watermarks to 2048 and 1024, above the 500 records of one kafka-clients poll (see
 * bench/RESULTS.md). Both report metrics through GreyhoundMetrics.live, as Greyhound's Java and
 * Futures APIs do by default. Prints one JSON line at the end.
 *
 * -Dbench.limitMs (S1, 0 for none) stops a backlog that is not consumed by then and reports the
 * rate of the part handled, with no latency (the live records are not produced).
 */
object Main {
  def main(args: Array[String]): Unit = {
    val scenario = prop("bench.scenario")
    val brokers  = prop("bench.brokers")
    val topic    = prop("bench.topic")
    val group    = prop("bench.group")
    val tuned    = sys.props.get("bench.tuned").contains("true")

    // Greyhound's Java and Futures APIs report metrics through GreyhoundMetrics.live by default.
    val metrics: GreyhoundMetrics = GreyhoundMetrics.live
    val loop                      = if (tuned) EventLoopConfig.Default.copy(lowWatermark = 1024, highWatermark = 2048) else EventLoopConfig.Default

    val run: Scenario = scenario match {
      case "S1" => new S1(brokers, topic)
      case "S2" => new S2(topic)
      case s    =>
        System.err.println(s"unknown -Dbench.scenario=$s (want S1 or S2)")
        sys.exit(2)
    }

    val config = RecordConsumerConfig(
      bootstrapServers = brokers,
      group = group,
      initialSubscription = ConsumerSubscription.Topics(run.topics),
      retryConfig = run.retry,
      eventLoopConfig = loop,
      offsetReset = OffsetReset.Earliest
    )
    val consumer = ZIO.scoped[GreyhoundMetrics](RecordConsumer.make(config, run.handler) *> ZIO.never)
    Unsafe.unsafe { implicit u =>
      zio.Runtime.default.unsafe.fork(consumer.provideLayer(ZLayer.succeed(metrics)).catchAllCause { c =>
        ZIO.succeed {
          System.err.println("greyhound consumer failed: " + c.prettyPrint)
          Runtime.getRuntime.halt(1)
        }
      })
    }
    println(run.await())
    System.out.flush()
    Runtime.getRuntime.halt(0) // the result is out; closing the consumer is not what is measured
  }

  type Handler = RecordHandler[Any, Throwable, Chunk[Byte], Chunk[Byte]]

  trait Scenario {
    def topics: Set[String]
    def retry: Option[com.wixpress.dst.greyhound.core.consumer.retry.RetryConfig]
    def handler: Handler

    /** Waits for the end of the run and returns the JSON result line. */
    def await(): String
  }

  /** S1: the tracker of bench/contenders.go, on the JVM. */
  final class S1(brokers: String, topic: String) extends Scenario {
    private val live      = prop("bench.live").toInt
    private val liveTopic = if (live > 0) prop("bench.liveTopic") else ""
    private val ends      = endOffsets(brokers, topic)
    private val lastOffset: Map[Int, Long] = ends.map { case (p, e) => p -> (e - 1) }
    private val backlog                    = ends.values.sum
    private val first                      = new AtomicLong()
    private val last                       = new AtomicLong()
    private val finished                   = new AtomicInteger()
    private val backlogDone                = new CountDownLatch(1)
    private val liveDone                   = new CountDownLatch(if (live > 0) 1 else 0)
    private val lat                        = new ConcurrentLinkedQueue[java.lang.Long]()
    private val liveCount                  = new AtomicInteger()
    private val handled                    = new AtomicLong() // backlog records handled
    private val limitMs                    = sys.props.getOrElse("bench.limitMs", "0").toLong
    private val started                    = new CountDownLatch(1) // the first record was handled

    def topics: Set[String] = if (live > 0) Set(topic, liveTopic) else Set(topic)
    def retry               = None

    def handler: Handler = RecordHandler { r: ConsumerRecord[Chunk[Byte], Chunk[Byte]] =>
      ZIO.succeed(record(r))
    }

    private def record(r: ConsumerRecord[Chunk[Byte], Chunk[Byte]]): Unit = {
      val now = System.nanoTime()
      if (first.get() == 0 && first.compareAndSet(0, now)) started.countDown()
      if (r.topic == liveTopic) {
        lat.add(System.currentTimeMillis() - r.producedTimestamp)
        if (liveCount.incrementAndGet() == live) liveDone.countDown()
      } else {
        handled.incrementAndGet()
        if (lastOffset.get(r.partition).contains(r.offset)) {
          last.accumulateAndGet(now, Math.max)
          if (finished.incrementAndGet() == lastOffset.size) backlogDone.countDown()
        }
      }
    }

    def await(): String = {
      if (limitMs > 0) {
        started.await() // the limit runs on the records/s clock, from the first record handled
        if (!backlogDone.await(limitMs, java.util.concurrent.TimeUnit.MILLISECONDS)) {
          val n       = handled.get()
          val seconds = (System.nanoTime() - first.get()) / 1e9
          return f"""{"records":$n,"seconds":$seconds%.6f,"p50_ms":null,"p99_ms":null,"peak_rss_kb":${vmHWM()},""" +
            f""""extra":{"unfinished":"$n of $backlog records handled when stopped at ${limitMs / 1000.0}%.0fs"}}"""
        }
      }
      backlogDone.await()
      println("BACKLOG-DONE")
      System.out.flush()
      liveDone.await()
      val seconds    = (last.get() - first.get()) / 1e9
      val (p50, p99) = percentiles(lat.asScala.map(_.longValue.toDouble).toVector)
      f"""{"records":$backlog,"seconds":$seconds%.6f,"p50_ms":$p50,"p99_ms":$p99,"peak_rss_kb":${vmHWM()}}"""
    }
  }

  /** S2: the Spring peer's bookkeeping, with Greyhound's retry topics. */
  final class S2(topic: String) extends Scenario {
    private val records  = prop("bench.records").toInt
    private val retryMs  = prop("bench.retryMs").toLong
    private val first    = new AtomicLong()
    private val last     = new AtomicLong()
    private val failedAt = new ConcurrentHashMap[String, java.lang.Long]()
    private val handled  = ConcurrentHashMap.newKeySet[String]()
    private val lateness = new ConcurrentLinkedQueue[java.lang.Long]()
    private val done     = new CountDownLatch(1)
    private val failure  = new IllegalStateException("fails on its first attempt")

    def topics: Set[String] = Set(topic)
    def retry               = Some(ZRetryConfig.nonBlockingRetry(zio.Duration.fromMillis(retryMs)))

    def handler: Handler = RecordHandler { r: ConsumerRecord[Chunk[Byte], Chunk[Byte]] =>
      val now = System.nanoTime()
      first.compareAndSet(0, now)
      val key = r.key.fold("")(k => new String(k.toArray, UTF_8))
      if (key.startsWith("f") && r.topic == topic) {
        failedAt.putIfAbsent(key, now)
        ZIO.fail(failure)
      } else
        ZIO.succeed {
          if (handled.add(key)) {
            if (key.startsWith("f")) {
              val f = failedAt.get(key)
              if (f != null) lateness.add(now - (f + retryMs * 1000000L))
            }
            last.accumulateAndGet(now, Math.max)
            if (handled.size == records) done.countDown()
          }
        }
    }

    def await(): String = {
      done.await()
      val seconds    = (last.get() - first.get()) / 1e9
      val (p50, p99) = percentiles(lateness.asScala.map(_.longValue / 1e6).toVector)
      f"""{"records":$records,"seconds":$seconds%.6f,"p50_ms":$p50,"p99_ms":$p99,"peak_rss_kb":${vmHWM()},"extra":{"retried":${lateness.size},"dead_lettered":0}}"""
    }
  }

  /** The topic's end offsets per partition, listed before consuming: the backlog. */
  def endOffsets(brokers: String, topic: String): Map[Int, Long] = {
    val p = new Properties()
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers)
    val c = new KafkaConsumer[Array[Byte], Array[Byte]](p, new ByteArrayDeserializer, new ByteArrayDeserializer)
    try {
      val parts = c.partitionsFor(topic).asScala.map(i => new org.apache.kafka.common.TopicPartition(topic, i.partition))
      c.endOffsets(parts.asJava).asScala.map { case (tp, o) => tp.partition -> o.longValue }.toMap
    } finally c.close()
  }

  /** p50 and p99 as JSON numbers, or null for none. */
  def percentiles(xs: Vector[Double]): (String, String) =
    if (xs.isEmpty) ("null", "null")
    else {
      val s = xs.sorted
      (f"${s(s.size / 2)}%.3f", f"${s(math.min(s.size - 1, s.size * 99 / 100))}%.3f")
    }

  /** Peak resident set size of this JVM, in kB (VmHWM of /proc/self/status), or 0. */
  def vmHWM(): Long =
    try {
      java.nio.file.Files
        .readAllLines(java.nio.file.Paths.get("/proc/self/status"))
        .asScala
        .find(_.startsWith("VmHWM:"))
        .map(_.substring(6).replace("kB", "").trim.toLong)
        .getOrElse(0L)
    } catch { case _: Exception => 0L }

  def prop(k: String): String = {
    val v = System.getProperty(k)
    if (v == null || v.isEmpty) {
      System.err.println("missing -D" + k)
      sys.exit(2)
    }
    v
  }
}
