# The headline benchmark's plot: checkpoint time per step, one panel per
# slow-tier setting, one line per scenario (the median over the rounds of
# each step), the step at which gputier promoted the GPU job marked.
#
#   gnuplot -e "dir='build/headline'; settings='sata hdd'" bench/headline/plot.gp
#
# Reads <dir>/steps.csv (written by gputier_bench_headline); writes
# <dir>/headline.png. Debian: gnuplot-nox.
if (!exists("dir")) dir = "headline"
if (!exists("settings")) settings = "sata hdd"
csv = dir . "/steps.csv"
n = words(settings)

set terminal pngcairo size 1000, 420 * n font ",10"
set output dir . "/headline.png"
set multiplot layout n, 1 title "GPU job checkpoint (write + fsync) beside a CPU log writer: median of the rounds per step"
set logscale y
set grid ytics
set xlabel "checkpoint step"
set ylabel "checkpoint time (ms, log scale)"
set key top right

# Per step, the median over the rounds of one scenario, as "step ms" lines.
median(s, sc) = sprintf("< awk -F, '$1==\"%s\" && $2==\"%s\" {print $4, $6}' %s | sort -n -k1,1 -k2,2 | " . \
  "awk '{v[$1]=v[$1] \" \" $2; n[$1]++} END {for (k in v) {split(substr(v[k],2), a, \" \"); " . \
  "print k, a[int((n[k]+1)/2)]}}' | sort -n", s, sc, csv)
# The first step written after the promotion, per gputier round.
promoted(s) = sprintf("< awk -F, '$1==\"%s\" && $2==\"gputier\" && $7==1 && !seen[$3]++ {print $4}' %s | sort -n", s, csv)

do for [i = 1:n] {
  s = word(settings, i)
  unset arrow
  stats promoted(s) using 1 nooutput
  if (STATS_records > 0) {
    p = STATS_median
    set arrow 1 from p, graph 0 to p, graph 1 nohead dashtype 2 lw 2 lc rgb "#2ca02c"
    set label 1 sprintf("gputier promoted the GPU job\n(first fast checkpoint: step %d, median)", p) \
      at p, graph 0.92 offset 1, 0 tc rgb "#2ca02c"
  } else {
    unset label 1
  }
  set title sprintf("slow tier: %s-like (emulated: ext4 on a RAM-backed loop device throttled with blk-throttle)", s)
  plot median(s, "default") using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb "#d62728" title "default (all on the slow tier)", \
       median(s, "all-fast") using 1:2 with linespoints lw 2 pt 5 ps 0.6 lc rgb "#1f77b4" title "all-fast (all on the fast tier)", \
       median(s, "gputier") using 1:2 with linespoints lw 2 pt 9 ps 0.7 lc rgb "#2ca02c" title "gputier"
}
unset multiplot
