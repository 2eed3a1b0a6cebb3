import time

while True:  # waits forever for something at import
    time.sleep(1)
