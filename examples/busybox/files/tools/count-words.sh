#!/bin/sh
# Counts the words of each file given.
for file in "$@"; do
    printf '%s %s\n' "$(wc -w < "$file")" "$file"
done
