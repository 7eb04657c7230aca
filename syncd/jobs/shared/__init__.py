"""What more than one job uses, so that no job module imports another.

- `dsorder_plan`: the DSOrder loop's decisions (dsorder.pull and dsorder.progress).
- `instock_follow`: polling Instock orders and storing what changed (instock.orders
  and dsorder.progress).
- `instock_records`: Instock records that failed validation, as rejects.
"""
