set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'sync_job_killed.png'
set multiplot layout 4,1 title 'sync_job_killed (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:8]
set object rect from 2.00, graph 0 to 3.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set object rect from 5.00, graph 0 to 5.50, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set ylabel 'p50 ms'
plot 'data/sync_job_killed-shared_db_batch.tsv' using 1:2 with linespoints title 'shared_db_batch'
set ylabel 'p99 ms'
plot 'data/sync_job_killed-shared_db_batch.tsv' using 1:3 with linespoints title 'shared_db_batch'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/sync_job_killed-shared_db_batch.tsv' using 1:4 with linespoints title 'shared_db_batch'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/sync_job_killed-shared_db_batch.tsv' using 1:5 with linespoints title 'shared_db_batch'
unset multiplot
