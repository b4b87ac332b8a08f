var total = 0

proc describe(x: int): string = "total is " & $x

proc step*() =
  inc total
  echo describe(total)
