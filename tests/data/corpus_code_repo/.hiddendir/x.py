print("hidden dir")
