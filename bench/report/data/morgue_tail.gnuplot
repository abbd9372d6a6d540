set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'morgue_tail.png'
set multiplot layout 4,1 title 'morgue_tail (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:20]
set object rect from 1.00, graph 0 to 19.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set logscale y
set ylabel 'p50 ms (log)'
plot 'data/morgue_tail-resilient.tsv' using 1:2 with linespoints title 'resilient', 'data/morgue_tail-hedged.tsv' using 1:2 with linespoints title 'hedged'
set ylabel 'p99 ms (log)'
plot 'data/morgue_tail-resilient.tsv' using 1:3 with linespoints title 'resilient', 'data/morgue_tail-hedged.tsv' using 1:3 with linespoints title 'hedged'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/morgue_tail-resilient.tsv' using 1:4 with linespoints title 'resilient', 'data/morgue_tail-hedged.tsv' using 1:4 with linespoints title 'hedged'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/morgue_tail-resilient.tsv' using 1:5 with linespoints title 'resilient', 'data/morgue_tail-hedged.tsv' using 1:5 with linespoints title 'hedged'
unset multiplot
