"""Regenerates the checked-in `*.schema.pbtxt` files from the code: `python -m tfrecords_schemas`."""
from tfrecords_schemas import clip, common, tokens

if __name__ == "__main__":
    for module in (clip, tokens):
        with open(module.PBTXT, "w", encoding="utf-8") as f:
            f.write(common.schema_text(module.schema()))
        print("wrote", module.PBTXT)
