#!/usr/bin/env bash
# Generates the quickstart's sample videos with the ffmpeg CLI from distinct lavfi sources, with
# transitions at known frames (25 fps, 320x180, H.264):
#   cuts.mp4      testsrc2 4 s | mandelbrot 5 s | testsrc 3 s            hard cuts at frames 100, 225
#   fade.mp4      sierpinski 4 s, fade to black 1 s, black 0.4 s, fade in 1 s, testsrc2 4 s (+ sine audio)
#   dissolve.mp4  mandelbrot 5 s dissolving over 1 s into sierpinski triangles, 12 s in all; transition frames 100-125
# Usage: infra/make-samples.sh [out_dir]   (default: samples)
set -euo pipefail
out=${1:-samples}
mkdir -p "$out"
R=25
S=320x180
norm="format=yuv420p,setsar=1,fps=$R"
enc=(-threads 1 -c:v libx264 -preset veryfast -crf 20 -g 50 -bf 2 -pix_fmt yuv420p -movflags +faststart)
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

ff -f lavfi -i "testsrc2=size=$S:rate=$R:duration=4" \
   -f lavfi -i "mandelbrot=size=$S:rate=$R,trim=duration=5" \
   -f lavfi -i "testsrc=size=$S:rate=$R:duration=3" \
   -filter_complex "[0]$norm[a];[1]$norm[b];[2]$norm[c];[a][b][c]concat=n=3:v=1:a=0[v]" \
   -map "[v]" "${enc[@]}" "$out/cuts.mp4"

ff -f lavfi -i "sierpinski=size=$S:rate=$R:seed=3,trim=duration=5" \
   -f lavfi -i "color=black:size=$S:rate=$R:duration=0.4" \
   -f lavfi -i "testsrc2=size=$S:rate=$R:duration=5" \
   -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10.4" \
   -filter_complex "[0]$norm,fade=t=out:st=4:d=1[a];[1]$norm[b];[2]$norm,fade=t=in:st=0:d=1[c];[a][b][c]concat=n=3:v=1:a=0[v]" \
   -map "[v]" -map 3:a "${enc[@]}" -c:a aac -b:a 64k "$out/fade.mp4"

ff -f lavfi -i "mandelbrot=size=$S:rate=$R,trim=duration=5" \
   -f lavfi -i "sierpinski=size=$S:rate=$R:type=triangle:seed=5,trim=duration=8" \
   -filter_complex "[0]$norm[a];[1]$norm[b];[a][b]xfade=transition=fade:duration=1:offset=4[v]" \
   -map "[v]" "${enc[@]}" "$out/dissolve.mp4"

echo "make-samples: wrote $(ls "$out" | wc -l) videos to $out/"
