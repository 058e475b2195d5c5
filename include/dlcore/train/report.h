#pragma once

// Moved: the result-file layer now lives in io/ (io/files.h: write_file_atomic,
// read_file; io/number_format.h: format_double, format_thousands; io/csv.h:
// CsvTable, CsvCell; io/json.h: Json, parse_json, read_json, dump_json,
// write_json, json_at, json_get). This forwarding header is kept for one
// release; include the io/ headers instead.

#include <dlcore/io/csv.h>
#include <dlcore/io/files.h>
#include <dlcore/io/json.h>
#include <dlcore/io/number_format.h>
