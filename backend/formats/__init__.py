"""Outside formats, one module per format, each with read and write.

`boxes` holds the only conversions between the database's pixel boxes and the conventions
of the outside world; `label_map` the TF OD API label map; `tfrecord` TF OD API TFRecords (with `tfrecord_framing`, `tf_example`,
`tfrecord_checks` and `tfrecord_preview`);
`voc`, `coco`, `csv_format`, `yolo` the common annotation formats. The shared in-memory form
of an annotated image read from any of them is `records.AnnotatedImage` (written from
`records.ExportImage`); `drawing` is the one box-drawing function and `remote` reads record sets
and label maps behind a URL.
"""
