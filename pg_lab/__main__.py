from pg_lab.train import main

if __name__ == "__main__":  # not when a spawned worker process imports it
    main()
